"""`envdoctor check`: probe, run the checks, render."""

from __future__ import annotations

import os
import sys
from typing import Optional

from envdoctor.checks import load_all, run_checks
from envdoctor.errors import UsageError
from envdoctor.facts import Report
from envdoctor.fix.lock import state_dir
from envdoctor.fix.recover import pending_report
from envdoctor.probe import collect
from envdoctor.redact import redact_report
from envdoctor.render.json_ import render_json
from envdoctor.render.markdown import render_markdown
from envdoctor.render.output import emit as write
from envdoctor.render.output import emit_rendered
from envdoctor.render.text import render_text
from envdoctor.rules import load_tables

FORMATS = ("text", "json", "markdown")


def check_output_path(output: Optional[str]) -> None:
    """Refuse an -o that cannot be written before probing (which takes seconds), not after."""
    if not output:
        return
    if os.path.isdir(output):
        raise UsageError(f"-o {output}: is a directory")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError(f"-o {output}: no such directory {parent}")
    if not os.access(parent, os.W_OK) and not os.access(output, os.W_OK):
        raise UsageError(f"-o {output}: {parent} is not writable")


def check_selectors(option: str, patterns: Optional[list[str]]) -> None:
    """An id or prefix that matches no rule is an error, not a silent no-op: `--select ED3O1` (a typo)
    would otherwise run no check at all and exit 0, and a CI gate on `check` would always pass."""
    ids = sorted(load_all().rules)
    for p in patterns or []:
        want = p.strip().upper()
        if want and not any(i.startswith(want) for i in ids):
            raise UsageError(f"{option} {p.strip()}: no rule id starts with it (known: {ids[0]} .. {ids[-1]}; "
                             "see `envdoctor rules`)")


def diagnose(python: Optional[str], quick: bool, timeout: float, rules_dirs: list[str],
             select: Optional[list[str]], ignore: Optional[list[str]], show_progress: bool = False,
             extra: Optional[dict] = None, read_pending: bool = True, fork: Optional[bool] = None) -> Report:
    """probe -> facts -> checks -> findings. `read_pending=False`: the caller's own fix is the pending one."""
    tables = load_tables(rules_dirs)
    if not show_progress:
        report = collect(python, quick=quick, timeout=timeout, fork=fork)
    else:
        # a spinner on stderr, only on a terminal; its text follows the probes as they finish
        from rich.console import Console

        with Console(stderr=True).status("probing: starting isolated imports of torch, torchvision, mmcv") as status:
            report = collect(python, quick=quick, timeout=timeout, fork=fork,
                             progress=lambda text: status.update(f"probing: {text}"))
    if not quick:
        from envdoctor.probe.pip_cache import probe_pip_cache  # locally built mmcv wheels pip would reuse (ED406)

        report.extra["pip_cache"] = probe_pip_cache()
    # an interrupted fix, for ED601: read only (check never recovers, never writes to the target)
    pending = (pending_report(state_dir(report.python.prefix), not quick)
               if read_pending and report.python.prefix else None)
    if pending:
        report.extra["fix_pending"] = pending
    report.extra.update(extra or {})  # e.g. a recovered fix, for ED601
    report.findings = run_checks(report, tables, select, ignore)
    return report


def exit_code(report: Report) -> int:
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def write_output(report: Report, fmt: str, output: Optional[str], verbose: bool = False) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "text":
        emit_rendered(lambda stream: render_text(report, stream, color=False if output else None, verbose=verbose),
                      output)
        return
    emit(render_json(report) if fmt == "json" else render_markdown(report), output)


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
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    check_output_path(output)
    report = _checked(python, quick, rules_dirs, select, ignore, no_redact, timeout, not quick and sys.stderr.isatty(),
                      fork=False if no_fork else None)
    write_output(report, fmt, output, verbose)
    return exit_code(report)


def _checked(python: Optional[str], quick: bool, rules_dirs: list[str], select: Optional[list[str]],
             ignore: Optional[list[str]], no_redact: bool, timeout: float, progress: bool,
             fork: Optional[bool] = None) -> Report:
    check_selectors("--select", select)
    check_selectors("--ignore", ignore)
    report = diagnose(python, quick, timeout, rules_dirs, select, ignore, show_progress=progress, fork=fork)
    if not no_redact:
        report = redact_report(report)
    return report
