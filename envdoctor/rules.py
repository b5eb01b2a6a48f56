"""Load and validate the rule tables (rules/*.toml), shipped ones first, then --rules DIRs.

Every table is an array of tables (``[[name]]``); every row names the public
``source`` it was taken from. The schema (rules_schema.py) says which keys a row may have
and of what kind; a row that breaks it is an error naming the file and the line
(tomllib reports lines only for syntax errors, so the line of a semantic error
is found in the text here).

Layering: a user's directory comes after the shipped one. In tables that have an
identity key (``KEYS``) a user's row with the same key replaces the shipped row;
everywhere else user rows are added.
"""

from __future__ import annotations

import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from envdoctor.errors import UsageError
from envdoctor.rules_schema import COMMON, KEYS, META_KEYS, SCHEMAS


def shipped_dir() -> Path:
    """rules/ inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "rules", here.parent / "rules"):
        if cand.is_dir():
            return cand
    raise UsageError("envdoctor's rule tables are missing from this installation (rules/)")


class RuleFileError(UsageError):
    def __init__(self, path: Path, line: Optional[int], message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


@dataclass
class Tables:
    """Every table by name; rows keep the file (``_file``) and line (``_line``) they came from."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def rows(self, name: str) -> list[dict[str, Any]]:
        return self.tables.get(name, [])

    def sources(self, *names: str) -> list[str]:
        """The distinct source URLs of the rows of these tables, in order of first use."""
        seen: list[str] = []
        for name in names:
            for row in self.rows(name):
                src = row.get("source")
                if src and src not in seen:
                    seen.append(src)
        return seen


_LINE = re.compile(r"line (\d+)")
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")


def _locate(text: str, table: str, index: int, key: Optional[str] = None) -> Optional[int]:
    """1-based line of row `index` of [[table]] (or of its `key`), found in the file's text."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
    start = None
    count = -1
    for i, line in enumerate(lines):
        if header.match(line):
            count += 1
            if count == index:
                start = i
                break
    if start is None:
        plain = re.compile(r"^\s*(\[\s*" + re.escape(table) + r"\s*\]|" + re.escape(table) + r"\s*=)")
        return next((i + 1 for i, line in enumerate(lines) if plain.match(line)), None)
    if key is None:
        return start + 1
    keyline = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
    for j in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[j]):
            break
        if keyline.match(lines[j]):
            return j + 1
    return start + 1


def validate_data(path: Path, text: str, data: dict[str, Any]) -> None:
    """Raise RuleFileError (file:line) for the first row that breaks the schema."""
    for name, rows in data.items():
        if name == "meta":
            if not isinstance(rows, dict):
                raise RuleFileError(path, _locate(text, name, 0), "[meta] must be a table")
            for key in rows:
                if key not in META_KEYS:
                    raise RuleFileError(path, _locate(text, name, 0),
                                        f"[meta]: unknown key {key!r} (allowed: {', '.join(sorted(META_KEYS))})")
            continue
        schema = SCHEMAS.get(name)
        if schema is None:
            raise RuleFileError(path, _locate(text, name, 0),
                                f"unknown table [[{name}]] (known: {', '.join(sorted(SCHEMAS))})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RuleFileError(path, _locate(text, name, 0), f"[{name}] must be an array of tables ([[{name}]])")
        allowed = {**COMMON, **schema}
        for i, row in enumerate(rows):
            for key, value in row.items():
                if key not in allowed:
                    raise RuleFileError(path, _locate(text, name, i, key),
                                        f"[[{name}]]: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
                err = allowed[key][0](value)
                if err:
                    raise RuleFileError(path, _locate(text, name, i, key), f"[[{name}]] {key}: {err}")
            for key, (_, required) in allowed.items():
                if required and key not in row:
                    raise RuleFileError(path, _locate(text, name, i), f"[[{name}]]: missing required key {key!r}")


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(path, None, f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _LINE.search(str(exc))
        raise RuleFileError(path, int(m.group(1)) if m else None, f"not valid TOML: {exc}") from None
    validate_data(path, text, data)
    # the line of every [[table]] header, found in one pass (for messages and `envdoctor explain`)
    headers: dict[str, list[int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            headers.setdefault(m.group(1), []).append(n)
    for name, rows in data.items():
        if name == "meta":
            continue
        lines = headers.get(name, [])
        for i, row in enumerate(rows):
            row["_file"] = str(path)
            row["_line"] = lines[i] if i < len(lines) else _locate(text, name, i)
    return data


def _identity(name: str, row: dict[str, Any]) -> Optional[tuple[Any, ...]]:
    keys = KEYS.get(name)
    return tuple(row.get(k) for k in keys) if keys else None


def _duplicates(path: Path, data: dict[str, Any]) -> None:
    """Two rows with one identity in the same file: which one wins would be an accident of order."""
    for name, rows in data.items():
        if name == "meta" or name not in KEYS:
            continue
        seen: dict[tuple[Any, ...], int] = {}
        for row in rows:
            ident = _identity(name, row)
            assert ident is not None
            if ident in seen:
                keys = ", ".join(f"{k} = {v!r}" for k, v in zip(KEYS[name], ident))
                raise RuleFileError(path, row["_line"], f"[[{name}]] with {keys} is defined twice in this file, "
                                    f"at lines {seen[ident]} and {row['_line']}; keep one")
            seen[ident] = row["_line"]


def _regular(path: Path, warn: Callable[[str], None]) -> bool:
    """A FIFO or device named *.toml would block the read forever (or never end): skipped, with a warning."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise RuleFileError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return True
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
        "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    warn(f"--rules: skipped {path}: {kind}, not a rule table file")
    return False


def load_tables(extra_dirs: Iterable[str] = (), warn: Optional[Callable[[str], None]] = None) -> Tables:
    from envdoctor.render.messages import warn as to_stderr

    say: Callable[[str], None] = warn or to_stderr
    tables = Tables()
    dirs = [shipped_dir()] + [Path(d).expanduser() for d in extra_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--rules {d}: not a directory")
        for path in sorted(d.glob("*.toml")):
            if not _regular(path, say):
                continue
            data = load_file(path)
            _duplicates(path, data)
            tables.files.append(path)
            for name, rows in data.items():
                if name == "meta":
                    continue
                existing = tables.tables.setdefault(name, [])
                for row in rows:
                    ident = _identity(name, row)
                    if ident is not None:
                        # a later directory's row with the same identity replaces the earlier one
                        existing[:] = [r for r in existing if _identity(name, r) != ident]
                    existing.append(row)
    return tables
