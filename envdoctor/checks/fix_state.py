"""ED6xx: the state of `envdoctor fix` transactions on this environment.

`envdoctor check` (and `fix`) first finish any interrupted fix (envdoctor.fix.apply.
recover_if_needed); what they found is in `report.extra["fix_recovery"]`, which these
checks turn into findings. Pure: they read the report only.
"""

from __future__ import annotations

from typing import Any, Iterable

from envdoctor.checks import Rule, check, finding
from envdoctor.facts import Finding, Fix, Report

INTERRUPTED_FIX = Rule(
    id="ED601",
    name="interrupted-fix",
    severity="warning",
    component="envdoctor",
    summary="An `envdoctor fix` on this environment was interrupted; its journal was found and the fix rolled "
            "back (or could not be, or is still running).",
    rationale="A fix that is killed half-way leaves pip's work half done. Every fix keeps a journal and a backup, "
              "so the next envdoctor run restores the environment byte for byte before looking at it. This "
              "finding says that happened, so the user knows the fix they started did not take effect.",
    evidence=("extra.fix_recovery",),
    fixes=("run `envdoctor fix` again", "if the rollback was incomplete: make site-packages writable and run "
           "`envdoctor check` again; the backup is kept in the state directory"),
)


@check(INTERRUPTED_FIX)
def interrupted_fix(report: Report, tables: Any) -> Iterable[Finding]:
    rec = report.extra.get("fix_recovery")
    if not isinstance(rec, dict):
        return
    status = rec.get("status")
    evidence = {k: rec.get(k) for k in ("status", "txn", "kind", "interrupted_at", "pid", "state_dir")
                if rec.get(k) is not None}
    if status in ("rolled_back", "aborted", "undone"):
        what = "undo was completed" if status == "undone" else "fix was found and rolled back"
        yield finding(INTERRUPTED_FIX, f"an interrupted {what}",
                      detail=f"transaction {rec.get('txn')} stopped at {rec.get('interrupted_at')}; the environment "
                             "is as it was before that fix.",
                      evidence=evidence, severity="info",
                      fixes=[Fix("run the fix again", ["envdoctor fix --apply"])])
    elif status == "busy":
        yield finding(INTERRUPTED_FIX, "an envdoctor fix is running on this environment right now",
                      detail=f"the lock is held by {rec.get('holder')}; this report may show a half-applied fix.",
                      evidence={**evidence, "holder": rec.get("holder")}, severity="warning")
    else:
        problems = rec.get("problems") or []
        yield finding(INTERRUPTED_FIX, "an interrupted envdoctor fix could not be rolled back completely",
                      detail=f"{len(problems)} paths still differ from before the fix; the backup is kept in "
                             f"{rec.get('state_dir')}. Make site-packages writable and run `envdoctor check` "
                             "again to retry.",
                      evidence={**evidence, "problems": problems[:10]}, severity="error")
