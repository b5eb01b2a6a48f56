"""`envdoctor check`: probe, run the checks, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from envdoctor.checks import run_checks
from envdoctor.errors import UsageError
from envdoctor.facts import Report
from envdoctor.fix.apply import recover_if_needed
from envdoctor.probe import collect
from envdoctor.redact import redact_report
from envdoctor.render.json_ import render_json
from envdoctor.render.markdown import render_markdown
from envdoctor.render.text import render_text
from envdoctor.rules import load_tables

FORMATS = ("text", "json", "markdown")


def diagnose(python: Optional[str], quick: bool, timeout: float, rules_dirs: list[str],
             select: Optional[list[str]], ignore: Optional[list[str]], show_progress: bool = False,
             extra: Optional[dict] = None) -> Report:
    """probe -> facts -> checks -> findings."""
    tables = load_tables(rules_dirs)
    if not show_progress:
        report = collect(python, quick=quick, timeout=timeout)
    else:
        # a spinner on stderr, only on a terminal; its text follows the probes as they finish
        from rich.console import Console

        with Console(stderr=True).status("probing: starting isolated imports of torch, torchvision, mmcv") as status:
            report = collect(python, quick=quick, timeout=timeout,
                             progress=lambda text: status.update(f"probing: {text}"))
    if not quick:
        from envdoctor.probe.pip_cache import probe_pip_cache  # locally built mmcv wheels pip would reuse (ED406)

        report.extra["pip_cache"] = probe_pip_cache()
    report.extra.update(extra or {})  # e.g. a recovered fix, for ED601
    report.findings = run_checks(report, tables, select, ignore)
    return report


def exit_code(report: Report) -> int:
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def write_output(report: Report, fmt: str, output: Optional[str], verbose: bool = False) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "text":
        if output:
            with open(output, "w", encoding="utf-8") as f:
                render_text(report, f, color=False, verbose=verbose)
        else:
            render_text(report, verbose=verbose)
        return
    text = render_json(report) if fmt == "json" else render_markdown(report)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o {output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)


def run(python: Optional[str], fmt: str, output: Optional[str], quick: bool, rules_dirs: list[str],
        select: Optional[list[str]], ignore: Optional[list[str]], no_redact: bool, timeout: float,
        verbose: bool = False) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    progress = not quick and sys.stderr.isatty()
    report = diagnose(python, quick, timeout, rules_dirs, select, ignore, show_progress=progress)
    # An interrupted `fix` left a journal: finish its rollback, then look again. The probe told us the
    # prefix, so this costs nothing (and runs no extra interpreter) when there is no journal.
    recovery = recover_if_needed(report.python.prefix, echo=lambda m: print(m, file=sys.stderr))
    if recovery:
        report = diagnose(python, quick, timeout, rules_dirs, select, ignore, show_progress=progress,
                          extra={"fix_recovery": recovery})
    if not no_redact:
        report = redact_report(report)
    write_output(report, fmt, output, verbose)
    return exit_code(report)
