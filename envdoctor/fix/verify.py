"""Does the fresh probe confirm the fix? Read from the verification probe's facts, never run here.

The verification is one pass of the pipeline after pip: the same probe `check` runs, with the plan's
verify statements run inside it (envdoctor.probe.collect_verified). Only a build's compiled ops are
exercised by a probe of their own (envdoctor.probe.verify_ops), with the compat layer switched off.
"""

from __future__ import annotations

from typing import Callable

from envdoctor.fact_readers import load_message, state
from envdoctor.facts import LoadResult, Report
from envdoctor.fix.plan import Plan
from envdoctor.fix.wheels import norm_name

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def statements(plan: Plan) -> list[str]:
    """Every verify statement of the plan's runnable actions, once, in order."""
    out: list[str] = []
    for a in plan.runnable:
        out += [s for s in a.verify.imports if s not in out]
    return out


def statement_failure(stmt: str, res: LoadResult) -> str:
    if res.status == "skipped":
        return f"`{stmt}`: {res.note or 'not tried'}"
    err = res.error
    if err is None:
        return f"`{stmt}`: {res.status}"
    if res.status == "timeout":
        return f"`{stmt}`: no answer within the timeout"
    text = f"{err.type}: {err.message}" if err.type and err.type not in ("Crash", "Exit") else err.message
    return f"`{stmt}`: {' '.join(text.split())[:300] or res.status}"


def verify(plan: Plan, after: Report, verified: dict[str, LoadResult], python: str, timeout: float,
           echo: Echo = _quiet) -> list[str]:
    """What the verification probe (`after`, and `verified`: its verify statements) says is still wrong."""
    failures: list[str] = []
    for a in plan.runnable:
        for comp in a.verify.components_ok:
            status = state(after, comp)
            if status != "ok":
                msg = load_message(after, comp, last=True, limit=200)
                failures.append(f"{comp}: {status}" + (f" ({msg})" if msg else ""))
        for dist, version in a.verify.present.items():
            pkg = after.packages.get(norm_name(dist))
            if pkg is None:
                failures.append(f"{dist} is not installed")
            elif version and pkg.version != version:
                failures.append(f"{dist} is {pkg.version}, expected {version}")
        for dist in a.verify.absent:
            if norm_name(dist) in after.packages:
                failures.append(f"{dist} is still installed")
        for rid in a.verify.gone:
            still = [f for f in after.findings if f.id == rid]
            if still:
                failures.append(f"{rid} is still reported: {still[0].title}")
        for stmt in a.verify.imports:
            res = verified.get(stmt)
            if res is None:
                failures.append(f"`{stmt}`: the verification probe did not run it")
            elif res.status != "ok":
                failures.append(statement_failure(stmt, res))
        if a.verify.ops:
            from envdoctor.probe import verify_ops

            ops = verify_ops(python, a.verify.ops, a.verify.ops_device, timeout=max(timeout, 300.0))
            failures += ops.failures
            if not ops.failures:
                echo(f"  verified with the compiled {ops.ext_file}: {', '.join(a.verify.ops)} ran on {ops.device}")
    return failures
