"""ED6xx: the state of `envdoctor fix` transactions on this environment.

`check` never recovers anything: it reads the journals (envdoctor.fix.recover.pending_report, no lock,
no write) into `report.fix_pending`. `fix` recovers before it plans and puts what it did in
`report.fix_recovery`. These checks turn both into findings. Pure: they read the report only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from envdoctor.checks import Rule, check, finding
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

INTERRUPTED_FIX = Rule(
    id="ED601",
    name="interrupted-fix",
    severity="error",
    component="envdoctor",
    summary="An `envdoctor fix` on this environment was interrupted and left it half-changed; "
            "`envdoctor fix --recover` rolls back what that fix wrote (and only that).",
    rationale="A fix that is killed half-way leaves pip's work half done. Every fix keeps a journal of what it "
              "wrote (with digests) and a backup of what it replaced. `check` only reads them and says what a "
              "recovery would do; `envdoctor fix --recover` (or the next `fix --apply`) does it, touching only "
              "paths still exactly as the fix left them. Whatever was installed or changed since is left alone; "
              "a path the fix wrote and someone changed since is a conflict the user decides.",
    evidence=("fix_pending", "fix_recovery"),
    fixes=("`envdoctor fix --recover --python PY`",
           "on a conflict: `--on-conflict keep` (keep your version) or `--on-conflict restore` (the backup)",
           "when a directory is read-only: make it writable (or remount it), then `envdoctor fix --recover`"),
)

DONE = ("rolled_back", "aborted", "undone")


def _choices(rec: dict[str, Any], assessment: dict[str, Any]) -> list[Fix]:
    py = rec.get("python") or "PY"
    base = rec.get("recover_command") or f"envdoctor fix --recover --python {py}"
    if assessment.get("conflicts"):
        return [Fix("keep your versions of the conflicting paths, roll back the rest",
                    [base.replace("--recover", "--recover --on-conflict keep", 1)]),
                Fix("restore the conflicting paths from the backup too (your changes to them are lost)",
                    [base.replace("--recover", "--recover --on-conflict restore", 1)])]
    if assessment.get("blocked"):
        dirs = ", ".join(b.split(": ")[0] for b in assessment["blocked"][:3])
        return [Fix(f"make {dirs} writable, then roll the fix back", [base])]
    return [Fix("roll back what the interrupted fix wrote", [base])]


def _pending(rec: dict[str, Any]) -> Iterable[Finding]:
    a = rec.get("assessment") or {}
    evidence = {k: rec.get(k) for k in ("txn", "kind", "state", "interrupted_at", "since", "last_step_at", "pid",
                                        "actions", "state_dir") if rec.get(k) is not None}
    if rec.get("running"):
        yield finding(INTERRUPTED_FIX, f"an envdoctor {rec.get('kind')} is running on this environment right now",
                      detail=f"transaction {rec.get('txn')} (pid {rec.get('pid')}) is at {rec.get('interrupted_at')}; "
                             "this report may show it half-applied.", evidence=evidence, severity="warning")
        return
    what = "; ".join(rec.get("actions") or []) or str(rec.get("kind"))
    detail = (f"transaction {rec.get('txn')} ({what}) stopped at {rec.get('interrupted_at')} "
              f"({rec.get('last_step_at')}); started {rec.get('since')}.")
    if a:
        detail += (f" Recovering removes {len(a.get('delete', []))} and restores {len(a.get('restore', []))} paths "
                   "it wrote")
        if a.get("yours"):
            detail += f"; it leaves alone what appeared or changed since ({', '.join(a['yours'][:6])})"
        detail += "."
        if a.get("conflicts"):
            detail += (f" {len(a['conflicts'])} paths it wrote were changed since (conflicts): "
                       f"{', '.join(a['conflicts'][:3])}; choose which version to keep.")
        if a.get("blocked"):
            detail += f" It cannot run yet: {'; '.join(a['blocked'][:3])}."
    if rec.get("problems"):
        detail += f" Last attempt could not restore: {'; '.join(rec['problems'][:3])}."
    yield finding(INTERRUPTED_FIX, f"an interrupted envdoctor {rec.get('kind')} left this environment half-changed",
                  detail=detail, evidence={**evidence, "conflicts": a.get("conflicts", [])[:10],
                                           "blocked": a.get("blocked", [])[:10]},
                  fixes=_choices(rec, a))


@check(INTERRUPTED_FIX)
def interrupted_fix(report: Report, tables: Tables) -> Iterable[Finding]:
    pending = report.fix_pending
    if isinstance(pending, dict):
        yield from _pending(pending)
        return
    rec = report.fix_recovery
    if not isinstance(rec, dict):
        return
    evidence = {k: rec.get(k) for k in ("status", "txn", "kind", "interrupted_at", "pid", "state_dir")
                if rec.get(k) is not None}
    if rec.get("status") in DONE:
        yield finding(INTERRUPTED_FIX, f"an interrupted {rec.get('kind')} was recovered",
                      detail=f"transaction {rec.get('txn')} stopped at {rec.get('interrupted_at')}; what it wrote "
                             "was rolled back, nothing else was touched.",
                      evidence=evidence, severity="info")
    else:
        yield from _pending({**rec, "assessment": rec.get("assessment") or {}})
