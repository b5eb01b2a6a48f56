"""Plain-text rendering of a fix plan and its result. Formats only; decides nothing.

The plan arrives as an `envdoctor.fix.plan.Plan`, read by its attributes and not imported: render
imports no fix (tests/test_import_direction.py)."""

from __future__ import annotations

from typing import Any, Optional

from envdoctor.fact_readers import state
from envdoctor.facts import Report

COMPONENTS = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")


def plan_text(plan: Any, applying: bool) -> str:
    out = [f"envdoctor fix: {plan.python}  (prefix {plan.prefix})"]
    if not plan.problems:
        out.append("✓ nothing to fix: torch, torchvision and mmcv load as they should.")
        return "\n".join(out) + "\n"
    out.append("Problems:")
    for p in plan.problems:
        ids = f" [{', '.join(p.findings)}]" if p.findings else ""
        out.append(f"  ✗ {p.component}: {p.status}" + (f": {p.message}" if p.message else "") + ids)
    out.append(f"Plan (strategy {plan.strategy}):")
    if not plan.actions:
        out.append("  (no action envdoctor can take)")
    for i, a in enumerate(plan.actions, 1):
        flag = "" if a.applies else f"   [not applied: {a.not_applied_because}]"
        out.append(f"  {i}. [{a.kind}] {a.title}{flag}")
        out.append(f"     why:      {a.why}")
        for j, line in enumerate(a.details):
            out.append(f"     {'build:' if j == 0 else '':<9} {line}")
        for k, label in ((a.changes, "changes:"), (a.commands, "commands:")):
            for j, line in enumerate(k):
                out.append(f"     {label if j == 0 else '':<9} {line}")
        for j, line in enumerate(a.coverage):
            out.append(f"     {'covers:' if j == 0 else '':<9} {line}")
        out.append(f"     undo:     {a.undo}")
        out.append(f"     verify:   {a.verify.description}")
    if plan.notes:
        out.append("Notes:")
        out += [f"  - {n}" for n in plan.notes]
    if not applying:
        out.append("Dry run: nothing was changed. Run again with --apply to carry out the plan.")
    return "\n".join(out) + "\n"


def _status(report: Optional[Report], name: str) -> str:
    if report is None:
        return "-"
    st = state(report, name)
    if st == "missing":
        return "not installed"
    c = report.components[name]
    return f"{st} ({c.version})" if c.version and name in ("torch", "torchvision", "mmcv") else st


def summary_text(result: dict[str, Any], before: Report, after: Optional[Report]) -> str:
    out = [f"Result: {result['status']}: {result['message']}"]
    if result.get("txn"):
        out.append(f"  transaction {result['txn']}")
    if result.get("problems"):
        out.append("  NOT restored (the backup is kept; run `envdoctor fix` again to retry):")
        out += [f"    {p}" for p in result["problems"][:20]]
    if after is not None:
        out.append(f"  {'component':<17} {'before':<28} after")
        for name in COMPONENTS:
            b, a = _status(before, name), _status(after, name)
            if b == a == "not installed":
                continue
            out.append(f"  {name:<17} {b:<28} {a}")
    if result.get("changes"):
        c = result["changes"]
        out.append(f"  files: {c['added']} added, {c['removed']} removed, {c['changed']} changed "
                   "(all recorded; `envdoctor fix --undo` reverts them)")
    return "\n".join(out) + "\n"


def _yours(a: dict[str, Any]) -> list[str]:
    out = []
    if a.get("yours"):
        shown = ", ".join(a["yours"][:10]) + (", …" if len(a["yours"]) > 10 else "")
        out.append(f"  left alone (not this fix's: appeared or changed after it, {a.get('yours_count', 0)} paths): "
                   f"{shown}")
    if a.get("pip_leftovers"):
        out.append("  pip's leftover folders (pip could not delete them; safe to delete once no process holds "
                   f"them): {', '.join(a['pip_leftovers'][:10])}")
    return out


def recovery_text(rec: dict[str, Any]) -> str:
    """What a recovery did, or exactly why it could not and what to run."""
    st = rec.get("status")
    a = rec.get("assessment") or {}
    cmd = rec.get("recover_command") or "envdoctor fix --recover"
    head = f"envdoctor: interrupted {rec.get('kind')} {rec.get('txn')} (stopped at {rec.get('interrupted_at')})"
    out: list[str] = []
    if st in ("rolled_back", "aborted"):
        out.append(f"{head}: rolled back — removed {len(a.get('delete', []))} and restored "
                   f"{len(a.get('restore', []))} paths it had written" if st == "rolled_back" else
                   f"{head}: it had changed nothing; closed")
        out += _yours(a)
        if a.get("conflicts") and rec.get("on_conflict") != "restore":
            out.append(f"  kept your versions of: {', '.join(a['conflicts'][:10])}")
    elif st == "undone":
        out.append(f"{head}: the undo was completed")
    elif st == "conflict":
        out.append(f"{head}: NOT rolled back, nothing was changed: {len(a['conflicts'])} paths it wrote were "
                   "changed after it (by you or another tool):")
        out += [f"    {p}" for p in a["conflicts"][:20]]
        out.append("  choose, then run one of:")
        out.append(f"    {cmd.replace('--recover', '--recover --on-conflict keep', 1)}     "
                   "(keep your versions; roll back the rest)")
        out.append(f"    {cmd.replace('--recover', '--recover --on-conflict restore', 1)}  "
                   "(restore those paths from the backup too; your changes to them are lost)")
        out += _yours(a)
    elif st == "blocked":
        out.append(f"{head}: NOT rolled back, nothing was changed: cannot write")
        out += [f"    {b}" for b in a.get("blocked", [])[:10]]
        out.append(f"  make it writable (or remount it read-write), then run: {cmd}")
    else:
        problems = rec.get("problems") or []
        out.append(f"{head}: the rollback could not finish ({len(problems)} paths):")
        out += [f"    {p}" for p in problems[:20]]
        out.append(f"  the backup is kept in {rec.get('state_dir')}; once that is fixed, run: {cmd}")
    return "\n".join(out) + "\n"


def pending_text(rec: dict[str, Any]) -> str:
    """A dry run's note on an interrupted fix it would recover first (it recovers nothing itself)."""
    a = rec.get("assessment") or {}
    what = "; ".join(rec.get("actions") or []) or str(rec.get("kind"))
    out = [f"Interrupted: {rec.get('kind')} {rec.get('txn')} ({what}) stopped at {rec.get('interrupted_at')} "
           f"({rec.get('last_step_at')})."]
    if rec.get("running"):
        out.append(f"  it is running right now (pid {rec.get('pid')}).")
    else:
        if a:
            out.append(f"  `envdoctor fix --recover` (or `fix --apply`, first) removes {len(a.get('delete', []))} and "
                       f"restores {len(a.get('restore', []))} paths it wrote"
                       + (f"; {len(a['conflicts'])} conflicts to decide" if a.get("conflicts") else "")
                       + (f"; blocked: {'; '.join(a['blocked'][:3])}" if a.get("blocked") else ""))
            out += _yours(a)
        out.append(f"  run: {rec.get('recover_command')}")
    return "\n".join(out) + "\n"
