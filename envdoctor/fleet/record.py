"""The line format a fleet member writes and the collector reads back.

Each member writes short lines, each a marker and one JSON object tagged with the run, the
node and the task. A report is zlib-compressed, base64-encoded and cut into parts with a
sequence number and a digest of the whole, so that:

- a launcher that prefixes lines (`pdsh`: "node01: ", `srun --label`: "3: ") changes nothing:
  the marker is searched anywhere in the line;
- lines of several tasks sharing one pipe cannot tear each other: every line is written with
  one write() of less than PIPE_BUF (4096) bytes, which POSIX makes atomic on a pipe;
- no line reaches 1024 bytes: srun forwards task output in 1024-byte pieces and cuts longer
  lines in two (seen with Slurm 22.05; tests/test_fleet_launchers.py);
- a member that dies half-way leaves parts that do not add up, reported as such, never a
  truncated report taken for a whole one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

MARK = "@envdoctor-fleet/1 "
# base64 characters of report per line; with the bounded tags a line stays under 1000 bytes
PART_CHARS = 700
MAX_LINE = 1000
KINDS = ("hello", "part", "error", "bye")
_DECODER = json.JSONDecoder()


class GarbledRecord(ValueError):
    """A line carries the marker but not a readable record (torn or cut off)."""


@dataclass
class Record:
    run: str
    node: str
    task: Optional[str]
    kind: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, Optional[str]]:
        return (self.node, self.task)


def _line(run: str, node: str, task: Optional[str], kind: str, **info: Any) -> str:
    # bounded tags: the line must stay under PIPE_BUF whatever the launcher calls the node
    body = {"r": run[:64], "n": node[:100], "t": None if task is None else task[:32], "k": kind, **info}
    return MARK + json.dumps(body, separators=(",", ":"), ensure_ascii=True) + "\n"


def hello_line(run: str, node: str, task: Optional[str], size: Optional[int], version: str) -> str:
    return _line(run, node, task, "hello", size=size, v=version)


def error_line(run: str, node: str, task: Optional[str], why: str, code: int) -> str:
    return _line(run, node, task, "error", why=why[:1500], code=code)


def bye_line(run: str, node: str, task: Optional[str], code: int) -> str:
    return _line(run, node, task, "bye", code=code)


def report_lines(run: str, node: str, task: Optional[str], report: dict[str, Any]) -> list[str]:
    """The report as parts; each line is shorter than PIPE_BUF whatever the names are."""
    packed = base64.b64encode(zlib.compress(json.dumps(report, separators=(",", ":")).encode(), 6)).decode()
    digest = hashlib.sha256(packed.encode()).hexdigest()[:16]
    chunks = [packed[i:i + PART_CHARS] for i in range(0, len(packed), PART_CHARS)] or [""]
    return [_line(run, node, task, "part", i=i, of=len(chunks), sha=digest, d=c) for i, c in enumerate(chunks)]


def parse_line(line: str) -> Optional[Record]:
    """The record on one line, None for a line that is not ours; GarbledRecord for a torn one."""
    at = line.find(MARK)
    if at < 0:
        return None
    text = line[at + len(MARK):].strip()
    try:
        body, _ = _DECODER.raw_decode(text)
    except ValueError:
        raise GarbledRecord(text[:80]) from None
    if not isinstance(body, dict) or body.get("k") not in KINDS or not isinstance(body.get("n"), str) \
            or not isinstance(body.get("r"), str):
        raise GarbledRecord(text[:80])
    task = body.get("t")
    info = {k: v for k, v in body.items() if k not in ("r", "n", "t", "k")}
    return Record(run=body["r"], node=body["n"], task=None if task is None else str(task), kind=body["k"], info=info)


def unpack(parts: dict[int, str], digest: str) -> dict[str, Any]:
    """The report from its parts; ValueError when they do not add up to what was sent."""
    packed = "".join(parts[i] for i in sorted(parts))
    if hashlib.sha256(packed.encode()).hexdigest()[:16] != digest:
        raise ValueError("its parts do not add up to what was sent (torn or mixed output)")
    try:
        data = json.loads(zlib.decompress(base64.b64decode(packed)))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"its parts do not decode: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    return data
