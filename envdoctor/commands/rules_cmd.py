"""`envdoctor rules`: list and validate the rule tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from envdoctor.rules import load_tables


def run(rules_dirs: list[str]) -> int:
    tables = load_tables(rules_dirs)
    c = Console(highlight=False, soft_wrap=True)
    for path in tables.files:
        c.print(escape(str(path)))
    for name, rows in sorted(tables.tables.items()):
        c.print(f"  {name}: {len(rows)} rows")
    c.print("all rule tables are valid")
    return 0
