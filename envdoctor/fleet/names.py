"""Node names in a redacted summary: stable pseudonyms (node-01 ...), the mapping kept local.

Cluster node names are organisation data (they name racks, sites, customers). A redacted summary
says node-07 instead; the person who ran it gets the mapping on stderr or in a local file
(`--names FILE`, created 0600), never inside the summary. With the same --names file, a node keeps
its pseudonym across runs, so two summaries (before/after a rollout) can be compared node by node.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional

from envdoctor.errors import UsageError

_PSEUDO = re.compile(r"^node-(\d+)$")
_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# a hostlist expression (node[01-64]) names nodes too
_HOSTLIST = re.compile(r"[A-Za-z0-9_.-]*\[[0-9,\-]+\][A-Za-z0-9_.-]*")


def natural(name: str) -> list[Any]:
    """node2 before node10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


class Pseudonyms:
    def __init__(self, path: Optional[str] = None) -> None:
        self.path = Path(path) if path else None
        self.mapping: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"--names {path}: not a name mapping written by envdoctor ({exc})") from None
            if not isinstance(data, dict) or not all(isinstance(v, str) and _PSEUDO.match(v) for v in data.values()):
                raise UsageError(f"--names {path}: not a name mapping written by envdoctor")
            self.mapping = {str(k): v for k, v in data.items()}
        self.new: list[str] = []

    def assign(self, names: Iterable[str]) -> None:
        """Give every name not yet mapped the next number, in natural order (stable for a given set)."""
        used = [int(m.group(1)) for v in self.mapping.values() if (m := _PSEUDO.match(v))]
        nxt = max(used, default=0) + 1
        todo = sorted({n for n in names if n not in self.mapping}, key=natural)
        width = max(2, len(str(nxt + len(todo))))
        for n in todo:
            self.mapping[n] = f"node-{nxt:0{width}d}"
            self.new.append(n)
            nxt += 1

    def __call__(self, name: str) -> str:
        return self.mapping.get(name, name)

    def scrub(self, text: str) -> str:
        """Real node names anywhere in a text -> their pseudonyms (hostlist expressions -> <hostlist>)."""
        text = _HOSTLIST.sub("<hostlist>", text)
        return _TOKEN.sub(lambda m: self.mapping.get(m.group(0), m.group(0)), text)

    def save(self) -> None:
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.mapping, f, indent=1, sort_keys=True)
        except OSError as exc:
            raise UsageError(f"--names {self.path}: {exc.strerror or exc}") from None

    def lines(self) -> list[str]:
        """The mapping, for stderr: `node-01 = gpu-a17`."""
        return [f"{self.mapping[n]} = {n}" for n in sorted(self.mapping, key=lambda n: natural(self.mapping[n]))]
