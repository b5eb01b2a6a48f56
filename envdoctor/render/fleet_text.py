"""A fleet summary and a fleet diff as text (rich; plain when not a TTY). Computes nothing: it shows the
dicts of envdoctor.fleet.summary / rollout as they are."""

from __future__ import annotations

import sys
from typing import IO, Any, Optional

from rich.console import Console
from rich.markup import escape

from envdoctor.render.diff import show_value

FIELD_LABELS = {"driver": "driver", "cuda_driver": "driver CUDA", "gpus": "GPUs", "python": "Python",
                "torch": "torch", "torchvision": "torchvision", "mmcv": "mmcv", "loads": "imports",
                "findings": "findings"}
SEV_MARK = {"error": ("✗", "red"), "warning": ("!", "yellow"), "info": ("·", "cyan")}
SHOW_NODES = 12


def nodes_text(nodes: list[str], limit: int = SHOW_NODES) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f" (+{len(nodes) - limit} more)" if len(nodes) > limit else "")


def change_text(ch: dict[str, Any]) -> str:
    """One change (envdoctor.report_diff.Change as a dict), the way `envdoctor diff` words it."""
    a, b, note = ch.get("a"), ch.get("b"), ch.get("note") or ""
    if ch.get("section") == "findings":
        what = f"{show_value(a)} → {show_value(b)}" if a and b else (f"new {b}" if b else f"gone (was {a})")
    elif ch.get("direction") == "added":
        what = f"added {show_value(b)}"
    elif ch.get("direction") == "removed":
        what = f"removed (was {show_value(a)})"
    else:
        what = f"{show_value(a)} → {show_value(b)}"
    return f"{ch.get('section')}: {ch.get('key')} {what}" + (f"  [{note}]" if note else "")


def headline(s: dict[str, Any]) -> str:
    groups = s["groups"]
    return (f"{s['reported']} of {s['expected']} node(s) reported; {len(groups)} environment(s)"
            + (f", {len(s['missing'])} without a report" if s["missing"] else ""))


def verdict(s: dict[str, Any]) -> str:
    parts = []
    errs = sum(g["count"] for g in s["groups"] if g["errors"])
    worse = [g for g in s["groups"] if g["worse"]]
    if errs:
        parts.append(f"{errs} node(s) with error findings")
    if worse:
        parts.append(f"{sum(g['count'] for g in worse)} node(s) worse than the majority")
    if s["missing"]:
        parts.append(f"{len(s['missing'])} node(s) without a report")
    if not s["groups"]:
        parts.append("no node reported")
    if parts:
        return "not healthy: " + "; ".join(parts)
    return "healthy: every node reported, no error, no outlier worse than the majority"


def launcher_lines(s: dict[str, Any], tail: int = 5) -> list[str]:
    """What the launcher did, when it matters: it failed, timed out, or some node is unaccounted for."""
    la = s.get("launcher") or {}
    if "command" not in la or not (la.get("exit_code") or la.get("timed_out") or s["missing"] or not s["groups"]):
        return []
    head = f"launcher {la['command'][0]}: " + ("stopped by --fleet-timeout" if la.get("timed_out")
                                               else f"exit code {la.get('exit_code')}")
    out = [f"{head} after {la.get('seconds', 0):.1f} s"]
    said = [ln for ln in la.get("stderr_tail") or [] if ln.strip()][-tail:]
    out += [f"  {ln}" for ln in said]
    return out


def _console(stream: Optional[IO[str]], color: Optional[bool]) -> Console:
    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=True, no_color=(color is False),
                   force_terminal=color if color else None)


def render_fleet_text(s: dict[str, Any], stream: Optional[IO[str]] = None, color: Optional[bool] = None) -> None:
    c = _console(stream, color)
    c.print(f"[bold]envdoctor fleet[/bold]  {escape(headline(s))}")
    for g in s["groups"]:
        f = g["facts"]["fields"]
        if g["majority"]:
            c.print(f"\n[bold]majority[/bold] {g['count']} node(s)  [dim]{g['fingerprint']}[/dim]  "
                    f"{escape(nodes_text(g['nodes']))}")
            for key, label in FIELD_LABELS.items():
                c.print(f"    {label:<12} {escape(f.get(key, ''))}")
        else:
            sym, style = ("✗", "red") if g["worse"] else ("~", "yellow")
            c.print(f"\n[{style}]{sym} outlier[/{style}] {g['count']} node(s)  [dim]{g['fingerprint']}[/dim]  "
                    f"{escape(nodes_text(g['nodes']))}" + ("" if g["worse"] else "  [dim](not worse than the "
                                                           "majority)[/dim]"))
            for ch in g["differences"]:
                c.print(f"    {escape(change_text(ch))}")
    if s["findings"]:
        c.print("\n[bold]findings across nodes[/bold]")
        for fc in s["findings"]:
            sym, style = SEV_MARK.get(fc["severity"], ("·", "cyan"))
            c.print(f"  [{style}]{sym}[/{style}] {fc['id']}  {fc['count']} of {s['reported']}  "
                    f"{escape(fc['title'])}  [dim]{escape(nodes_text(fc['nodes'], 6))}[/dim]")
    if s["missing"]:
        c.print("\n[bold]no report from[/bold]")
        for m in s["missing"]:
            who = m["node"] if m["node"] != "?" else f"task {m['task']}"
            c.print(f"  [red]✗[/red] {escape(who)}: {m['reason']}: {escape(m['detail'])}")
    la = launcher_lines(s)
    if la:
        c.print()
        for ln in la:
            c.print(f"[dim]{escape(ln)}[/dim]")
    c.print(f"\nfleet {escape(verdict(s))}")


def render_fleet_diff_text(d: dict[str, Any], stream: Optional[IO[str]] = None,
                           color: Optional[bool] = None) -> None:
    c = _console(stream, color)
    c.print(f"[bold]A[/bold] {escape(d['a'])}\n[bold]B[/bold] {escape(d['b'])}")
    for note in d["notes"]:
        c.print(f"[dim]note: {escape(note)}[/dim]")
    for t in d["transitions"]:
        sym, style = ("✗", "red") if t["worse"] else ("~", "yellow")
        c.print(f"\n[{style}]{sym} {t['kind']}[/{style}] {len(t['nodes'])} node(s): {escape(nodes_text(t['nodes']))}")
        if t["kind"] != "changed":
            c.print(f"    {escape(str(t['before'] or '(not in A)'))} → {escape(str(t['after'] or '(not in B)'))}")
        for ch in t["changes"]:
            c.print(f"    {escape(change_text(ch))}")
    c.print(f"\n{d['unchanged']} node(s) unchanged")
    c.print("[red]B is worse than A[/red]" if d["worse"] else "B is not worse than A")
