"""Read a report file back: the JSON written by `check --format json`, or the Markdown of
`check --format markdown` (the JSON inside its <details> block, e.g. saved from an issue).

Anything else is refused with one line (ReportError -> exit 2): a file that is not a
report, a report of a schema major this envdoctor does not read, a damaged report.
Readers accept unknown fields (additive changes keep the major; see docs/report.md).
"""

from __future__ import annotations

import bisect
import codecs
import json
import re
from pathlib import Path
from typing import Any, Optional, Union

from envdoctor.errors import ReportError
from envdoctor.facts import SCHEMA, SCHEMA_PREFIX, Report
from envdoctor.report_schema import depth_error, first_error

# The top-level sections every report of this major has, with their JSON types.
_SECTIONS: dict[str, type] = {
    "host": dict, "gpu": dict, "cuda_toolkit": dict, "python": dict, "packages": dict, "components": dict,
    "findings": list,
}
_OPEN = re.compile(r"^(`{3,})json[ \t]*$")
_CLOSE = re.compile(r"^(`{3,})[ \t]*$")


def schema_major(schema: str) -> int:
    """`envdoctor.report/1` -> 1 (a minor part, `1.2`, is tolerated for the future)."""
    tail = schema[len(SCHEMA_PREFIX):]
    try:
        return int(tail.split(".", 1)[0])
    except ValueError:
        raise ReportError(f"unknown report schema {schema!r}") from None


CURRENT_MAJOR = schema_major(SCHEMA)


def _json_from_markdown(text: str) -> Any:
    """The first ```json block (closed by a fence of the same length) that holds a report.

    A line scan, not a regular expression: a backtracking search for each opening fence's end is
    quadratic, and half a megabyte of unclosed fences took a minute.
    """
    lines = text.split("\n")
    closers: dict[int, list[int]] = {}
    for i, line in enumerate(lines):
        m = _CLOSE.match(line)
        if m:
            closers.setdefault(len(m.group(1)), []).append(i)
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m:
            ends = closers.get(len(m.group(1)), [])
            k = bisect.bisect_right(ends, i)
            if k < len(ends):
                body = "\n".join(lines[i + 1:ends[k]])
                if SCHEMA_PREFIX in body:
                    return json.loads(body)
                i = ends[k]
        i += 1
    return None


def parse_report(data: Any, name: str = "report") -> Report:
    """Check a decoded JSON value is a report this envdoctor reads, and build it."""
    if not isinstance(data, dict) or not isinstance(data.get("schema"), str):
        raise ReportError(f"{name} is not an envdoctor report (no \"schema\" field)")
    schema = data["schema"]
    if not schema.startswith(SCHEMA_PREFIX):
        raise ReportError(f"{name} is not an envdoctor report (schema {schema!r}, expected {SCHEMA!r})")
    major = schema_major(schema)
    if major != CURRENT_MAJOR:
        hint = "upgrade envdoctor to read it" if major > CURRENT_MAJOR else "re-run an envdoctor of that version"
        raise ReportError(f"{name} is an envdoctor report of schema version {major}; this envdoctor reads "
                          f"version {CURRENT_MAJOR} ({hint})")
    for key, typ in _SECTIONS.items():
        if not isinstance(data.get(key), typ):
            raise ReportError(f"{name} is a damaged envdoctor report: {key!r} is missing or not a JSON "
                              f"{'object' if typ is dict else 'array'}")
    for key in ("packages", "components"):
        bad = [k for k, v in data[key].items() if not isinstance(v, dict)]
        if bad:
            raise ReportError(f"{name} is a damaged envdoctor report: {key}[{bad[0]!r}] is not a JSON object")
    if any(not isinstance(f, dict) for f in data["findings"]):
        raise ReportError(f"{name} is a damaged envdoctor report: a finding is not a JSON object")
    where = depth_error(data) or first_error(data)
    if where:
        raise ReportError(f"{name} is not a valid envdoctor report: {where}")
    try:
        return Report.from_dict(data)
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        raise ReportError(f"{name} is not a valid envdoctor report: {type(exc).__name__}: {exc}") from None


# A real report is tens of kB (a few MB with thousands of packages); reading a multi-GB file
# someone passed by mistake would take minutes and gigabytes of memory before failing.
MAX_REPORT_BYTES = 64 * 1024 * 1024


def _too_big(p: Path, size: str) -> ReportError:
    return ReportError(f"{p} is not a valid envdoctor report: {size} (a report is at most "
                       f"{MAX_REPORT_BYTES // 2**20} MiB)")


def read_capped(p: Path) -> bytes:
    """At most MAX_REPORT_BYTES from any file: regular, a pipe (`<(...)`), or a device (/dev/zero)."""
    try:
        size = p.stat().st_size
        if p.is_file() and size > MAX_REPORT_BYTES:
            raise _too_big(p, f"{size:,} bytes")
        chunks: list[bytes] = []
        total = 0
        with open(p, "rb") as f:
            while True:
                chunk = f.read(min(1 << 20, MAX_REPORT_BYTES + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_REPORT_BYTES:
                    raise _too_big(p, f"more than {MAX_REPORT_BYTES:,} bytes")
    except OSError as exc:
        raise ReportError(f"cannot read {p}: {exc.strerror or exc}") from None
    return b"".join(chunks)


def decode_report(raw: bytes) -> Optional[str]:
    """The text of a saved report: UTF-8 (with or without a BOM), or UTF-16 as Windows PowerShell 5.1's `>`
    writes it (a BOM; without one, recognised by the zero bytes of its ASCII). None if it is neither."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    elif len(raw) >= 4 and raw[1] == 0 and raw[3] == 0 and raw[0] != 0:
        encodings = ["utf-16-le"]
    elif len(raw) >= 4 and raw[0] == 0 and raw[2] == 0 and raw[1] != 0:
        encodings = ["utf-16-be"]
    else:
        encodings = ["utf-8-sig"]
    for enc in encodings:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return None


def load_report(path: Union[str, Path]) -> Report:
    """A report from a file (JSON, or the Markdown of `--format markdown`)."""
    p = Path(path)
    raw = read_capped(p)
    text = decode_report(raw)
    if text is None:
        raise ReportError(f"{p} is not an envdoctor report (not UTF-8 or UTF-16 text)") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ReportError(f"{p} is not a valid envdoctor report: nested too deeply") from None
    except ValueError as exc:
        try:
            data = _json_from_markdown(text.replace("\r\n", "\n"))  # saved from a browser: CRLF
        except RecursionError:
            raise ReportError(f"{p} is not a valid envdoctor report: nested too deeply") from None
        except ValueError as inner:
            raise ReportError(f"{p} holds a damaged envdoctor report (invalid JSON in its ```json block: "
                              f"{inner})") from None
        if data is None:
            raise ReportError(f"{p} is not an envdoctor report (not JSON: {exc})") from None
    return parse_report(data, str(p))
