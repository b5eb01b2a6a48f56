"""`envdoctor check`: probe, run the checks, render.

Only the probe is imported up front. The target's processes (`import torch` ...) are the critical path, so
they start first; what runs after them (the rule tables, the checks, binary forensics, redaction, the
renderers and rich) is loaded by a thread while they run, and envdoctor's own start-up is not added to
their time. (So a bad --rules file is reported, exit 2, once the probe is done.)
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import replace
from typing import IO, Any, Optional

from envdoctor.errors import UsageError
from envdoctor.facts import Report
from envdoctor.probe import collect
from envdoctor.render.formats import check_format, check_output_path, write_formatted
from envdoctor.render.output import emit as write

FORMATS = ("text", "json", "markdown")
# imported while the probes run, what is needed first, first (binary forensics only after a full probe)
AFTER_PROBE = ("envdoctor.checks", "envdoctor.classify", "envdoctor.fix.lock", "envdoctor.fix.recover",
               "envdoctor.redact")
# before all: the main thread reads the host's memory with psutil as soon as the static probe is back
FIRST = ("psutil",)
# the renderer of each format: only the one asked for is imported (rich only for text and markdown)
RENDERERS = {"text": ("envdoctor.render.text",), "json": ("envdoctor.render.json_",),
             "markdown": ("envdoctor.render.markdown",)}
ALL_RENDERERS = tuple(m for ms in RENDERERS.values() for m in ms)


def _after_probe(quick: bool, rules_dirs: list[str], renderers: tuple[str, ...], out: dict[str, Any]) -> None:
    for name in FIRST:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - its user falls back without it (probe/host.py)
            pass
    try:
        from envdoctor.rules import load_tables

        out["tables"] = load_tables(rules_dirs)
    except Exception as exc:  # noqa: BLE001 - raised again in the main thread (a bad --rules file: exit 2)
        out["error"] = exc
        return
    try:
        from envdoctor.checks import load_all

        load_all()
        for name in AFTER_PROBE + renderers + (() if quick else ("envdoctor.binary",)):
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the main thread imports it again and reports the error its own way
        pass


def start_imports(quick: bool = False, rules_dirs: Optional[list[str]] = None,
                  renderers: tuple[str, ...] = ALL_RENDERERS, start: bool = True
                  ) -> tuple[threading.Thread, dict[str, Any]]:
    """Load the rule tables and import what comes after the probe, in a thread: (thread, its results).
    `start=False`: the caller starts the thread (when the probe processes are on their way)."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=_after_probe, args=(quick, list(rules_dirs or []), renderers, out),
                              name="envdoctor-imports", daemon=True)
    if start:
        thread.start()
    return thread, out


def check_selectors(option: str, patterns: Optional[list[str]]) -> None:
    """An id or prefix that matches no rule is an error, not a silent no-op: `--select ED3O1` (a typo)
    would otherwise run no check at all and exit 0, and a CI gate on `check` would always pass."""
    if not any(p.strip() for p in patterns or []):
        return  # nothing to validate: the checks are imported later, while the probes run
    from envdoctor.checks import load_all

    ids = sorted(load_all().rules)
    for p in patterns or []:
        want = p.strip().upper()
        if want and not any(i.startswith(want) for i in ids):
            raise UsageError(f"{option} {p.strip()}: no rule id starts with it (known: {ids[0]} .. {ids[-1]}; "
                             "see `envdoctor rules`)")


def diagnose(python: Optional[str], quick: bool, timeout: float, rules_dirs: list[str],
             select: Optional[list[str]], ignore: Optional[list[str]], show_progress: bool = False,
             fix_recovery: Optional[dict] = None, read_pending: bool = True, fork: Optional[bool] = None,
             renderers: tuple[str, ...] = ALL_RENDERERS) -> Report:
    """probe -> facts -> checks -> findings. `fix_recovery`: what the calling fix recovered first (for ED601);
    `read_pending=False`: the caller's own fix is the pending one."""
    if show_progress:  # before the thread, which imports rich too: two threads importing one package's
        from rich.console import Console  # modules in different orders can deadlock
    # started once the target is resolved and its processes are starting: resolving it (reading the
    # interpreter's file) and starting them are the critical path, the thread's imports would slow them
    imports, loaded = start_imports(quick, rules_dirs, renderers, start=False)
    try:
        if not show_progress:
            report = collect(python, quick=quick, timeout=timeout, fork=fork, started=imports.start)
        else:
            # a spinner on stderr, only on a terminal; its text follows the probes as they finish
            with Console(stderr=True).status("probing: starting isolated imports of torch, torchvision, mmcv") \
                    as status:
                report = collect(python, quick=quick, timeout=timeout, fork=fork, started=imports.start,
                                 progress=lambda text: status.update(f"probing: {text}"))
    finally:
        if imports.ident is not None:
            imports.join()  # never two threads importing one module; none left importing at exit
    if imports.ident is None:  # not started by the probe (it failed before): load what comes next now
        imports.start()
        imports.join()
    if "error" in loaded:
        raise loaded["error"]
    tables = loaded["tables"]
    from envdoctor.checks import run_checks
    from envdoctor.classify import classified
    from envdoctor.fix.lock import state_dir
    from envdoctor.fix.recover import pending_report

    # an interrupted fix, for ED601: read only (check never recovers, never writes to the target)
    pending = (pending_report(state_dir(report.python.prefix), not quick)
               if read_pending and report.python.prefix else None)
    facts = replace(classified(report, tables), fix_pending=pending or None, fix_recovery=fix_recovery)
    return replace(facts, findings=tuple(run_checks(facts, tables, select, ignore)))


def exit_code(report: Report) -> int:
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def write_output(report: Report, fmt: str, output: Optional[str], verbose: bool = False) -> None:
    # each renderer imported only when its format is written: rich is not needed for JSON
    def text(stream: IO[str], color: Optional[bool]) -> None:
        from envdoctor.render.text import render_text

        render_text(report, stream, color=color, verbose=verbose)

    def json() -> str:
        from envdoctor.render.json_ import render_json

        return render_json(report)

    def markdown() -> str:
        from envdoctor.render.markdown import render_markdown

        return render_markdown(report)

    write_formatted(fmt, output, text, json=json, markdown=markdown)


def emit(text: str, output: Optional[str]) -> None:
    """Write a rendered report to -o FILE (atomically; a bad path is a usage error), else to stdout."""
    write(text, output)


def run(python: Optional[str], fmt: str, output: Optional[str], quick: bool, rules_dirs: list[str],
        select: Optional[list[str]], ignore: Optional[list[str]], no_redact: bool, timeout: float,
        verbose: bool = False, fleet_member: Optional[str] = None, no_fork: bool = False) -> int:
    if fleet_member is not None:  # one node of `envdoctor fleet run`: the report goes out as tagged records
        from envdoctor.fleet.member import run_as_member

        return run_as_member(fleet_member, python, lambda py: _checked(py, quick, rules_dirs, select, ignore,
                                                                          no_redact, timeout, False))
    check_format(fmt, FORMATS)
    check_output_path(output)
    report = _checked(python, quick, rules_dirs, select, ignore, no_redact, timeout, not quick and sys.stderr.isatty(),
                      fork=False if no_fork else None, renderers=RENDERERS[fmt])
    write_output(report, fmt, output, verbose)
    return exit_code(report)


def _checked(python: Optional[str], quick: bool, rules_dirs: list[str], select: Optional[list[str]],
             ignore: Optional[list[str]], no_redact: bool, timeout: float, progress: bool,
             fork: Optional[bool] = None, renderers: tuple[str, ...] = ALL_RENDERERS) -> Report:
    check_selectors("--select", select)
    check_selectors("--ignore", ignore)
    report = diagnose(python, quick, timeout, rules_dirs, select, ignore, show_progress=progress, fork=fork,
                      renderers=renderers)
    if not no_redact:
        from envdoctor.redact import redact_report

        report = redact_report(report)
    return report
