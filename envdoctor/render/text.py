"""Human output: one screen, grouped by component, ✓ / ! / ✗, each finding with its fix."""

from __future__ import annotations

import os

import sys
from typing import IO, Any, Optional, Sequence

from rich.console import Console
from rich.markup import escape

from envdoctor.facts import Component, Finding, Report
from envdoctor.render.output import is_utf8

MARK = {"ok": ("✓", "green"), "warning": ("!", "yellow"), "error": ("✗", "red"), "info": ("·", "cyan"),
        "absent": ("-", "dim")}
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
ASCII_MARK = {"✓": "+", "!": "!", "✗": "x", "·": "-", "-": "-"}

# Component rows in display order, with the report keys they summarise.
ROWS = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")


def _fmt_load(comp: Component, limit: Optional[int] = None) -> str:
    """The load state in a few words. `limit` (columns) bounds the error message, but the loader's message is
    the diagnosis: it keeps at least 100 characters even if the row then wraps (None: 160 characters)."""
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
    room = 160 if limit is None else max(limit - len(load.status) - 2 - len(where), 100)
    return f"{load.status}: {_cut(first, room)}{where}"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:max(n - 1, 0)].rstrip() + "…"


def _is_path(text: str) -> bool:
    # a path or URL is kept whole: half of one is useless
    return " " not in text and ("/" in text or "\\" in text)


def bound(value: Any, items: int = 3, chars: int = 200) -> Optional[str]:
    """An evidence value as one bounded line: lists and dicts show their first items and '(+N more)', long
    text is cut (paths and URLs are kept whole), multi-line text shows its first line. None when empty."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, dict):
        parts = [f"{k}={bound(v, items, 60) or '-'}" for k, v in list(value.items())[:items]]
        more = f" (+{len(value) - items} more)" if len(value) > items else ""
        return ", ".join(parts) + more
    if isinstance(value, (list, tuple)):
        parts = [bound(v, items, 80) or "-" for v in value[:items]]
        more = f" (+{len(value) - items} more)" if len(value) > items else ""
        return ", ".join(parts) + more
    text = str(value)
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    tail = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    return (first if _is_path(first) else _cut(first, chars)) + tail


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
    ext_file = comp.facts.get("ext_file") if name == "mmcv._ext" and comp.load and comp.load.status == "ok" else None
    if isinstance(ext_file, str):
        # which library answered `import mmcv._ext`: mmcv's compiled one, or envdoctor's compat layer
        ver += " (compat layer)" if "_envdoctor_compat" in ext_file else f" (compiled {os.path.basename(ext_file)})"
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


# The compact view: how much of each primary finding it shows (-v shows everything).
WIDTH = 120  # columns the compact view aims at when the output is not a terminal
EVIDENCE_LINES = {"error": 4, "warning": 2, "info": 2}  # an error needs the proof; a warning the gist
EVIDENCE_CHARS = 100  # a longer value (not a path or URL) is cut; -v shows it whole
DETAIL_LINES = 2
FOLDED_FIXES = 1  # new fixes shown under a folded finding (the rest: -v)


class Block:
    """One primary finding and the findings it explains, in report order."""

    def __init__(self, primary: Finding) -> None:
        self.primary = primary
        self.folded: list[Finding] = []


def blocks(findings: Sequence[Finding]) -> list[Block]:
    """Group by Finding.explained_by (set by the checks; the report lists each primary before what it
    explains). A finding whose primary is not in the list stays a block of its own."""
    out: list[Block] = []
    by_id: dict[str, Block] = {}
    for f in findings:
        if f.explained_by:
            host = out[-1] if out and out[-1].primary.id == f.explained_by else by_id.get(f.explained_by)
            if host is not None:
                host.folded.append(f)
                continue
        b = Block(f)
        out.append(b)
        by_id.setdefault(f.id, b)
    # errors first also for reports written before the checks ordered them (stable: keeps the checks' order)
    return sorted(out, key=lambda b: SEVERITY_ORDER.get(b.primary.severity, len(SEVERITY_ORDER)))


class TextRenderer:
    def __init__(self, stream: Optional[IO[str]] = None, color: Optional[bool] = None,
                 verbose: bool = False) -> None:
        stream = stream or sys.stdout
        self.console = Console(file=stream, highlight=False, soft_wrap=True,
                               no_color=(color is False), force_terminal=color if color else None)
        self.ascii = not is_utf8(getattr(stream, "encoding", None) or "utf-8")  # cp65001 is UTF-8
        self.verbose = verbose
        self.width = max(self.console.width, 80) if self.console.is_terminal else WIDTH
        self.shown_commands: set[str] = set()
        self.row_messages: set[str] = set()  # load errors the component rows already showed

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
        row_room = self.width - 21  # "  ✓ " + 16-column label + " "
        for name in ROWS:
            comp = report.components.get(name)
            if comp is None:
                continue
            ver = _fmt_version(name, comp) if comp.installed or name.endswith("._ext") else ""
            load = _fmt_load(comp) if self.verbose else _fmt_load(comp, row_room - len(ver) - 2)
            state = _state(comp, by_comp.get(name, []))
            served = next((f.evidence["summary"] for f in by_comp.get(name, [])
                           if f.evidence.get("served_by") and f.evidence.get("summary")), None)
            if served and comp.load is not None and comp.load.status == "ok":
                # it imports because a stand-in serves it (no version of its own): say so, and how much of it
                ver, load = "", served
                state = "info" if state in ("ok", "absent") else state
            self._line(name, f"{ver}  {load}".strip(), state)
            if comp.load is not None and comp.load.error and comp.load.error.message.strip():
                self.row_messages.add(comp.load.error.message.strip().splitlines()[0])
        if report.probe_errors:
            for e in report.probe_errors:
                text = e if self.verbose else _cut(e.strip().splitlines()[0] if e.strip() else "", row_room)
                c.print(f"  {self.mark('warning')} probe    {escape(text)}")
        c.print()
        if not report.findings:
            c.print(f"{self.mark('ok')} no problems found")
            return
        groups = blocks(report.findings)
        for b in groups:
            if self.verbose:
                self.finding(b.primary)
                for f in b.folded:
                    self.finding(f)
            else:
                self._block(b)
        n_err = sum(f.severity == "error" for f in report.findings)
        n_warn = sum(f.severity == "warning" for f in report.findings)
        folded = sum(len(b.folded) for b in groups)
        causes = (f", {len(groups)} cause(s)" + ("" if self.verbose else "; -v shows all")) if folded else ""
        c.print(f"{n_err} error(s), {n_warn} warning(s){causes}. `envdoctor explain ID` tells more; "
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

    def _title(self, f: Finding, indent: str, prefix: str = "") -> None:
        state = f.severity if f.severity in MARK else "info"
        room = self.width - len(indent) - len(prefix) - 3 - len(f.id)
        title = f.title if self.verbose or not prefix else _cut(f.title.strip().splitlines()[0], room)
        bold = "" if prefix else "[bold]"
        self.console.print(f"{indent}{escape(prefix)}{self.mark(state)} {bold}{escape(f.id)}{bold and '[/bold]'} "
                           f"{escape(title)}")

    def _block(self, b: Block) -> None:
        """The compact view of one root cause: its title, a little detail, the most telling evidence, its fixes;
        each finding it explains on one line; no command printed twice."""
        c, f = self.console, b.primary
        self._title(f, "")
        detail = [line for line in f.detail.strip().splitlines() if line.strip()]
        for line in detail[:DETAIL_LINES]:
            c.print(f"    {escape(line)}")
        shown = 0
        said = f.title + "\n" + "\n".join(detail[:DETAIL_LINES])
        for key, value in f.evidence.items():
            if shown == EVIDENCE_LINES.get(f.severity, 2):
                break
            text = bound(value, chars=EVIDENCE_CHARS)
            # the component is the block's subject; a value the title or detail already states is noise
            if text is None or key == "component" or (isinstance(value, (str, int, float)) and str(value) in said) \
                    or (isinstance(value, str) and value.strip().splitlines()[0] in self.row_messages):
                continue
            c.print(f"    [dim]{escape(key)}:[/dim] {escape(text)}")
            shown += 1
        for fix in f.fixes:
            self._fix(fix, "    ", "fix")
        for g in b.folded:
            self._title(g, "    ", "also: ")
            new = [x for x in g.fixes if x.commands and not set(x.commands) <= self.shown_commands]
            for fix in new[:FOLDED_FIXES]:
                self._fix(fix, "      ", "or")
            if len(new) > FOLDED_FIXES:
                c.print(f"      [dim](+{len(new) - FOLDED_FIXES} more fix(es) with commands: -v)[/dim]")
        c.print()

    def _fix(self, fix: Any, indent: str, label: str) -> None:
        c = self.console
        new = [cmd for cmd in fix.commands if cmd not in self.shown_commands]
        repeated = len(new) < len(fix.commands)
        desc = fix.description
        if label == "or" and desc.lower().startswith("or "):
            desc = desc[3:]  # the label says it already
        desc = desc if not repeated else desc + (
            " (the command above)" if not new else " (some commands above)")
        c.print(f"{indent}[green]{label}:[/green] {escape(desc)}")
        for cmd in new:
            c.print(f"{indent}  $ {escape(cmd)}")
            self.shown_commands.add(cmd)

    def finding(self, f: Finding) -> None:
        """One finding in full (verbose output, and `inspect`)."""
        c = self.console
        state = f.severity if f.severity in MARK else "info"
        also = f" [dim](explained by {escape(f.explained_by)})[/dim]" if f.explained_by else ""
        c.print(f"{self.mark(state)} [bold]{escape(f.id)}[/bold] {escape(f.title)}{also}")
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


def render_text(report: Report, stream: Optional[IO[str]] = None, color: Optional[bool] = None,
                verbose: bool = False) -> None:
    """Print the report for a person: compact (root causes, folded explanations) or, with verbose, every
    finding in full."""
    TextRenderer(stream, color, verbose).render(report)
