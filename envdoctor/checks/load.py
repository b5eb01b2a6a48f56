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
            evidence={"status": load.status, "error_type": err.type if err else None, "message": msg},
            component=name.split(".")[0],
        )
