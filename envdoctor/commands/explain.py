"""`envdoctor explain ID`: what a rule checks, why, what it reads, how it is fixed, and its sources."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from envdoctor.checks import load_all
from envdoctor.errors import UsageError
from envdoctor.render.output import emit_rendered
from envdoctor.rules import load_tables


def run(rule_id: str, rules_dirs: list[str] | None = None) -> int:
    reg = load_all()
    rule = reg.rules.get(rule_id.strip().upper())
    if rule is None:
        known = ", ".join(sorted(reg.rules))
        raise UsageError(f"no rule {rule_id!r}; known rules: {known}")
    emit_rendered(lambda stream: _render(rule, rules_dirs, Console(file=stream, highlight=False, soft_wrap=True)))
    return 0


def _render(rule: Any, rules_dirs: list[str] | None, c: Console) -> None:
    c.print(f"[bold]{rule.id}[/bold] {rule.name} ({rule.severity}, {rule.component})")
    c.print(escape(rule.summary))
    if rule.rationale:
        c.print()
        c.print(escape(rule.rationale))
    if rule.evidence:
        c.print("\n[bold]Reads[/bold]: " + escape(", ".join(rule.evidence)))
    if rule.fixes:
        c.print("[bold]Fixes[/bold]:")
        for fx in rule.fixes:
            c.print(f"  - {escape(fx)}")
    if rule.tables:
        tables = load_tables(rules_dirs or [])
        c.print("[bold]Tables[/bold]: " + escape(", ".join(
            f"{t} ({len(tables.rows(t))} rows)" for t in rule.tables)))
        sources = tables.sources(*rule.tables)
        if sources:
            c.print("[bold]Sources[/bold] (of the table rows it uses):")
            for src in sources:
                c.print(f"  - {escape(src)}")
