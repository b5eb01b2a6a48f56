"""Plain-text rendering of a fix plan and its result. Formats only; decides nothing."""

from __future__ import annotations

from typing import Any, Optional

from envdoctor.facts import Report
from envdoctor.fix.plan import Plan

COMPONENTS = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")


def plan_text(plan: Plan, applying: bool) -> str:
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
        for k, label in ((a.changes, "changes:"), (a.commands, "commands:")):
            for j, line in enumerate(k):
                out.append(f"     {label if j == 0 else '':<9} {line}")
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
    c = report.components.get(name)
    if c is None or not c.installed:
        return "not installed"
    st = c.load.status if c.load else "skipped"
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


def recovery_text(rec: dict[str, Any]) -> str:
    st = rec.get("status")
    if st == "busy":
        return f"envdoctor: another envdoctor fix is running on this environment ({rec.get('holder')})\n"
    where = rec.get("interrupted_at", "?")
    if st in ("rolled_back", "aborted"):
        return (f"envdoctor: an interrupted fix ({rec.get('txn')}, stopped at {where}) was found and rolled back; "
                "the environment is as it was before it\n")
    if st == "undone":
        return f"envdoctor: an interrupted undo ({rec.get('txn')}) was completed\n"
    return (f"envdoctor: an interrupted fix ({rec.get('txn')}, stopped at {where}) could not be fully rolled back "
            f"({len(rec.get('problems', []))} paths); its backup is kept in {rec.get('state_dir')}\n")
