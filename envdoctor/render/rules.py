"""`envdoctor rules`' output: the rule tables that were loaded (and validated) and the checks."""

from __future__ import annotations

from typing import IO, Any, Callable, Optional

from rich.console import Console
from rich.markup import escape

from envdoctor.rules import Tables


def render_rules(tables: Tables, rules: list[Any], redact: Callable[[str], str], stream: IO[str],
                 color: Optional[bool] = None) -> None:
    """`rules`: every registered check rule; `redact` for the tables' paths (an install under ~, --rules ~/x)."""
    c = Console(file=stream, highlight=False, soft_wrap=True, no_color=(color is False))
    c.print("[bold]Rule tables[/bold]")
    for path in tables.files:
        c.print("  " + escape(redact(str(path))))
    for name, rows in sorted(tables.tables.items()):
        users = sorted(r.id for r in rules if name in r.tables)
        c.print(f"  {name}: {len(rows)} rows, {len(tables.sources(name))} sources"
                + (f"; used by {', '.join(users)}" if users else ""))
    c.print("[bold]Checks[/bold]")
    for rule in sorted(rules, key=lambda r: r.id):
        c.print(f"  {rule.id} {rule.name} ({rule.severity}): {escape(rule.summary)}")
    c.print("all rule tables are valid")
