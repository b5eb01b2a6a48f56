"""`envdoctor explain ID`'s output: what a rule checks, why, what it reads, its fixes and its sources."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, Optional

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def render_explain(rule: Any, tables: Optional["Tables"], stream: IO[str], color: Optional[bool] = None) -> None:
    """`tables`: the loaded rule tables when the rule reads any (their row counts and sources are shown)."""
    c = Console(file=stream, highlight=False, soft_wrap=True, no_color=(color is False))
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
    if rule.tables and tables is not None:
        c.print("[bold]Tables[/bold]: " + escape(", ".join(
            f"{t} ({len(tables.rows(t))} rows)" for t in rule.tables)))
        sources = tables.sources(*rule.tables)
        if sources:
            c.print("[bold]Sources[/bold] (of the table rows it uses):")
            for src in sources:
                c.print(f"  - {escape(src)}")
