"""`envdoctor rules`: list and validate the rule tables (a bad file is an error naming file:line, exit 2)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from envdoctor.checks import load_all
from envdoctor.redact import Redactor
from envdoctor.render.output import emit_rendered
from envdoctor.rules import Tables, load_tables


def run(rules_dirs: list[str]) -> int:
    tables = load_tables(rules_dirs)  # raises RuleFileError (file:line) on the first bad row
    emit_rendered(lambda stream: _render(tables, Console(file=stream, highlight=False, soft_wrap=True)))
    return 0


def _render(tables: Tables, c: Console) -> None:
    redact = Redactor(secrets=()).text  # the tables' paths name the user (an install under ~, --rules ~/x)
    c.print("[bold]Rule tables[/bold]")
    for path in tables.files:
        c.print("  " + escape(redact(str(path))))
    for name, rows in sorted(tables.tables.items()):
        users = sorted(r.id for r in load_all().rules.values() if name in r.tables)
        c.print(f"  {name}: {len(rows)} rows, {len(tables.sources(name))} sources"
                + (f"; used by {', '.join(users)}" if users else ""))
    c.print("[bold]Checks[/bold]")
    for rule in sorted(load_all().rules.values(), key=lambda r: r.id):
        c.print(f"  {rule.id} {rule.name} ({rule.severity}): {escape(rule.summary)}")
    c.print("all rule tables are valid")
