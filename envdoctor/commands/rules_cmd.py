"""`envdoctor rules`: list and validate the rule tables (a bad file is an error naming file:line, exit 2)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from envdoctor.checks import load_all
from envdoctor.rules import load_tables


def run(rules_dirs: list[str]) -> int:
    tables = load_tables(rules_dirs)  # raises RuleFileError (file:line) on the first bad row
    c = Console(highlight=False, soft_wrap=True)
    c.print("[bold]Rule tables[/bold]")
    for path in tables.files:
        c.print("  " + escape(str(path)))
    for name, rows in sorted(tables.tables.items()):
        users = sorted(r.id for r in load_all().rules.values() if name in r.tables)
        c.print(f"  {name}: {len(rows)} rows, {len(tables.sources(name))} sources"
                + (f"; used by {', '.join(users)}" if users else ""))
    c.print("[bold]Checks[/bold]")
    for rule in sorted(load_all().rules.values(), key=lambda r: r.id):
        c.print(f"  {rule.id} {rule.name} ({rule.severity}): {escape(rule.summary)}")
    c.print("all rule tables are valid")
    return 0
