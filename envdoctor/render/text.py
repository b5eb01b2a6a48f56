"""Human output: one screen, grouped by component, ✓ / ! / ✗, each finding with its fix."""

from __future__ import annotations

import sys
from typing import IO, Optional

from rich.console import Console
from rich.markup import escape

from envdoctor.facts import Component, Finding, Report

MARK = {"ok": ("✓", "green"), "warning": ("!", "yellow"), "error": ("✗", "red"), "info": ("·", "cyan"),
        "absent": ("-", "dim")}
ASCII_MARK = {"✓": "+", "!": "!", "✗": "x", "·": "-", "-": "-"}

# Component rows in display order, with the report keys they summarise.
ROWS = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")


def _fmt_load(comp: Component) -> str:
    load = comp.load
    if load is None:
        return ""
    if not comp.installed and load.status in ("skipped", "missing"):
        return "not installed"
    if load.status == "skipped":
        note = load.note or "not tried"
        return "not imported (--quick)" if note.endswith("--quick") else note
    if load.status == "ok":
        return f"imports ({load.seconds:.2f} s)" if load.seconds is not None else "imports"
    if load.status == "missing":
        return "not installed" if not comp.installed else "missing: " + (load.error.message if load.error else "")
    msg = load.error.message if load.error else ""
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    if load.status == "crash" and load.error and load.error.signal:
        return f"crash ({load.error.signal}) while importing"
    if load.status == "timeout":
        return f"timeout: no answer after {load.seconds or 0:.0f} s"
    where = ""
    if comp.facts.get("loaded_directly") and comp.facts.get("library"):
        where = f" (loading {comp.facts['library'].replace(chr(92), '/').rsplit('/', 1)[-1]} directly)"
    return f"{load.status}: {first[:160]}{where}"


def _fmt_version(name: str, comp: Component) -> str:
    """Version, the owning distribution(s) when they differ from the import name, and extra copies."""
    ver = comp.version or ""
    owners = comp.facts.get("owners") or []
    if len(owners) > 1:
        ver += " [" + " + ".join(f"{o['name']} {o['version']}" for o in owners) + " share this package]"
    elif comp.distribution and comp.distribution != name.split(".")[0]:
        ver += f" [{comp.distribution}]"
    if name == "torch" and comp.installed:
        vp = comp.facts.get("version_py", {})
        if vp.get("cuda"):
            ver += f" cuda {vp['cuda']}"
        elif "cuda" in vp and not vp.get("hip"):
            ver += " cpu-only"
    runtime = comp.facts.get("runtime") or {}
    imported = runtime.get("version")
    if isinstance(imported, str) and comp.version and imported != comp.version:
        ver += f" (imported {imported})"
    dirs = comp.facts.get("package_dirs") or []
    if len(dirs) > 1:
        ver += f" ({len(dirs)} copies on sys.path, first wins: {dirs[0].get('path', '')})"
    return ver


def _state(comp: Component, findings: list[Finding]) -> str:
    sev = {f.severity for f in findings}
    if "error" in sev:
        return "error"
    if "warning" in sev:
        return "warning"
    if comp.load is not None and comp.load.status not in ("ok", "skipped", "missing"):
        return "error"
    if comp.load is not None and comp.load.status == "skipped" and not (comp.load.note or "").endswith("--quick"):
        return "absent"  # not tried because something before it failed: no verdict either way
    if not comp.installed:
        return "absent"
    return "ok"


class TextRenderer:
    def __init__(self, stream: Optional[IO[str]] = None, color: Optional[bool] = None) -> None:
        stream = stream or sys.stdout
        self.console = Console(file=stream, highlight=False, soft_wrap=True,
                               no_color=(color is False), force_terminal=color if color else None)
        enc = (getattr(stream, "encoding", None) or "utf-8").lower()
        self.ascii = "utf" not in enc

    def mark(self, state: str) -> str:
        sym, style = MARK[state]
        if self.ascii:
            sym = ASCII_MARK[sym]
        return f"[{style}]{sym}[/{style}]"

    def render(self, report: Report) -> None:
        c = self.console
        py = report.python
        by_comp: dict[str, list[Finding]] = {}
        for f in report.findings:
            by_comp.setdefault(f.component, []).append(f)
        c.print(f"[bold]envdoctor {escape(report.envdoctor)}[/bold]  {escape(py.executable)}"
                f"  [dim](selected by {escape(py.selected_by)})[/dim]")
        for note in py.selection_notes:
            c.print(f"  [dim]{escape(note)}[/dim]")
        h = report.host
        self._line("host", f"{h.os} {h.os_version} {h.arch}" + (f", glibc {h.glibc}" if h.glibc else "")
                   + (f", GLIBCXX {h.glibcxx}" if h.glibcxx else ""), "ok")
        self._gpu_line(report, by_comp.get("gpu", []) + by_comp.get("driver", []))
        env = "conda" if py.conda_prefix else ("venv" if py.is_venv else "system")
        self._line("python", f"{py.implementation} {py.version} ({env}, {py.abi_tag or '?'}, {py.platform_tag or '?'})",
                   "error" if any(f.severity == "error" for f in by_comp.get("python", [])) else
                   "warning" if by_comp.get("python") else "ok")
        for name in ROWS:
            comp = report.components.get(name)
            if comp is None:
                continue
            ver = _fmt_version(name, comp) if comp.installed or name.endswith("._ext") else ""
            self._line(name, f"{ver}  {_fmt_load(comp)}".strip(), _state(comp, by_comp.get(name, [])))
        if report.probe_errors:
            for e in report.probe_errors:
                c.print(f"  {self.mark('warning')} probe    {escape(e)}")
        c.print()
        if not report.findings:
            c.print(f"{self.mark('ok')} no problems found")
            return
        for f in sorted(report.findings, key=lambda f: ("error", "warning", "info").index(f.severity)):
            self._finding(f)
        n_err = sum(f.severity == "error" for f in report.findings)
        n_warn = sum(f.severity == "warning" for f in report.findings)
        c.print(f"{n_err} error(s), {n_warn} warning(s). `envdoctor explain ID` tells more; "
                "`envdoctor fix` shows the plan.")

    def _gpu_line(self, report: Report, findings: list[Finding]) -> None:
        g = report.gpu
        if g.source == "none":
            text = "no NVIDIA driver"
        else:
            devs = ", ".join(f"{d.name} (sm {d.compute_capability or '?'})" for d in g.devices) or "no devices"
            text = f"driver {g.driver_version}, CUDA {g.cuda_driver_version or '?'} ({g.source}); {devs}"
        tk = report.cuda_toolkit
        if tk.nvcc:
            text += f"; nvcc {tk.version}"
        state = "error" if any(f.severity == "error" for f in findings) else "warning" if findings else (
            "ok" if g.source != "none" else "absent")
        if report.mode == "quick":
            text, state = "not probed (--quick)", "absent"
        self._line("gpu", text, state)

    def _line(self, label: str, text: str, state: str) -> None:
        self.console.print(f"  {self.mark(state)} {label:<16} {escape(text)}")

    def _finding(self, f: Finding) -> None:
        c = self.console
        state = f.severity if f.severity in MARK else "info"
        c.print(f"{self.mark(state)} [bold]{escape(f.id)}[/bold] {escape(f.title)}")
        if f.detail:
            for line in f.detail.strip().splitlines():
                c.print(f"    {escape(line)}")
        for key, value in list(f.evidence.items())[:8]:
            text = value if isinstance(value, str) else repr(value)
            c.print(f"    [dim]{escape(key)}:[/dim] {escape(text[:300])}")
        for fix in f.fixes:
            c.print(f"    [green]fix:[/green] {escape(fix.description)}")
            for cmd in fix.commands:
                c.print(f"      $ {escape(cmd)}")
        c.print()


def render_text(report: Report, stream: Optional[IO[str]] = None, color: Optional[bool] = None) -> None:
    TextRenderer(stream, color).render(report)
