"""Show a Diff: text (rich; plain when not a TTY) or JSON. Computes nothing (see envdoctor.report_diff)."""

from __future__ import annotations

import json
import sys
from typing import IO, Any, Optional

from rich.console import Console
from rich.markup import escape

from envdoctor.report_diff import Diff

MARK = {"worse": ("✗", "red"), "better": ("✓", "green"), "changed": ("~", "yellow"), "added": ("+", "cyan"),
        "removed": ("-", "magenta")}
ASCII = {"✗": "x", "✓": "o"}


def show_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def render_diff_json(diff: Diff) -> str:
    return json.dumps(diff.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_diff_text(diff: Diff, stream: Optional[IO[str]] = None, color: Optional[bool] = None) -> None:
    stream = stream or sys.stdout
    c = Console(file=stream, highlight=False, soft_wrap=True, no_color=(color is False),
                force_terminal=color if color else None)
    ascii_only = "utf" not in (getattr(stream, "encoding", None) or "utf-8").lower()
    for tag, side in (("A", diff.a), ("B", diff.b)):
        c.print(f"[bold]{tag}[/bold] {escape(side.label)}  [dim]{escape(side.created)}, envdoctor "
                f"{escape(side.envdoctor)}, {escape(side.python)}[/dim]")
        for t in side.trimmed:
            c.print(f"  [dim]trimmed: {escape(t)}[/dim]")
    c.print()
    section = None
    for ch in diff.changes:
        if ch.section != section:
            section = ch.section
            c.print(f"[bold]{escape(section)}[/bold]")
        sym, style = MARK.get(ch.direction, ("~", "yellow"))
        if ascii_only:
            sym = ASCII.get(sym, sym)
        if ch.section == "findings":
            what = f"{show_value(ch.a)} → {show_value(ch.b)}" if ch.a and ch.b else (
                f"new {ch.b}" if ch.b else f"gone (was {ch.a})")
        elif ch.direction == "added":
            what = f"added {show_value(ch.b)}"
        elif ch.direction == "removed":
            what = f"removed (was {show_value(ch.a)})"
        else:
            what = f"{show_value(ch.a)} → {show_value(ch.b)}"
        if ascii_only:
            what = what.replace("→", "->")
        note = f"  [dim]{escape(ch.note)}[/dim]" if ch.note else ""
        c.print(f"  [{style}]{sym}[/{style}] {escape(ch.key):<22} {escape(what)}{note}")
    if not diff.changes:
        c.print("no differences" + (" in what could be compared" if diff.not_compared else ""))
    for nc in diff.not_compared:
        c.print(f"[yellow]not compared:[/yellow] {escape(nc)}")
    c.print()
    worse = [ch for ch in diff.changes if ch.direction == "worse"]
    if worse:
        c.print("[red]B is worse than A[/red]: " + escape("; ".join(
            f"{ch.key} {show_value(ch.a)} -> {show_value(ch.b)}" for ch in worse)))
    elif diff.changes:
        c.print("B is not worse than A: no component fails that did not, no new error finding.")
