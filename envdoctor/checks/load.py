"""Generic: a component whose import fails or kills the process."""

from __future__ import annotations

from typing import Any, Iterable

from envdoctor.checks import Rule, check, finding
from envdoctor.facts import Finding, Report

IMPORT_FAILS = Rule(
    id="ED001",
    name="import-fails",
    severity="error",
    component="*",
    summary="A component's import fails, crashes or hangs in a fresh process of the target interpreter.",
    rationale="envdoctor imports each component in its own process, so a crash or hang is seen, not suffered. "
    "More specific checks explain the cause where they can; this one makes sure no failure goes unreported.",
    evidence=("components.*.load",),
    fixes=("the specific check that explains the failure (it replaces this finding when it fires)",),
    generic=True,
)


@check(IMPORT_FAILS)
def import_fails(report: Report, tables: Any) -> Iterable[Finding]:
    for name, comp in report.components.items():
        load = comp.load
        if load is None or load.status not in ("import_error", "crash", "timeout", "error"):
            continue
        err = load.error
        msg = (err.message.strip().splitlines() or [""])[0] if err else ""
        yield finding(
            IMPORT_FAILS,
            f"`import {name}` fails: {load.status}" + (f" ({err.signal})" if err and err.signal else ""),
            detail=msg,
            evidence={"component": name, "status": load.status, "error_type": err.type if err else None,
                      "message": msg, "cause": load.cause},
            component=name.split(".")[0],
        )


PROBE_INCOMPLETE = Rule(
    id="ED002",
    name="probe-incomplete",
    severity="warning",
    component="envdoctor",
    summary="A probe could not finish: some facts are missing, so some checks could not judge.",
    rationale="envdoctor reports what it could not find out rather than guessing; a check whose facts are missing "
    "stays silent, so an incomplete probe can hide a problem.",
    evidence=("probe_errors",),
    fixes=("re-run with a longer --timeout, or fix what the probe error names",),
)


@check(PROBE_INCOMPLETE)
def probe_incomplete(report: Report, tables: Any) -> Iterable[Finding]:
    for err in report.probe_errors:
        yield finding(PROBE_INCOMPLETE, f"probe incomplete: {err.splitlines()[0][:200] if err else '?'}",
                      evidence={"probe_error": err})
