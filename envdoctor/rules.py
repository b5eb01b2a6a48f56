"""Load and validate the rule tables (rules/*.toml), shipped ones first, then --rules DIRs."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from envdoctor.errors import UsageError


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
    """Every table by name; rows keep the file they came from."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def rows(self, name: str) -> list[dict[str, Any]]:
        return self.tables.get(name, [])


_LINE = re.compile(r"line (\d+)")


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(path, None, f"cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _LINE.search(str(exc))
        raise RuleFileError(path, int(m.group(1)) if m else None, f"not valid TOML: {exc}") from None


def load_tables(extra_dirs: Iterable[str] = ()) -> Tables:
    tables = Tables()
    dirs = [shipped_dir()] + [Path(d).expanduser() for d in extra_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--rules {d}: not a directory")
        for path in sorted(d.glob("*.toml")):
            data = load_file(path)
            tables.files.append(path)
            for name, rows in data.items():
                if name == "meta":
                    continue
                if not isinstance(rows, list):
                    raise RuleFileError(path, None, f"[{name}] must be an array of tables ([[{name}]])")
                for row in rows:
                    row.setdefault("_file", str(path))
                # a user's rows come after (and so can override) the shipped ones
                tables.tables.setdefault(name, []).extend(rows)
    return tables
