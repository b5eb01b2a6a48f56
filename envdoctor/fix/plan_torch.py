"""The `torch` strategy's actions: the checks' fixes that change torch itself (`Fix.strategy == "torch"`), printed,
and carried out only with --allow-torch-change: one action per pip install of the fix's FixChoice. A torch fix
without a choice (a report of an older envdoctor) is a note: its commands are for the user to run.

Kept apart from plan.py (like plan_build.py) so that the planner of the repairs and this one change independently.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from envdoctor import commandline as shell
from envdoctor.fact_readers import load_message, mmcv_dist_names, state
from envdoctor.facts import FAILED, Report
from envdoctor.fix.plan import Action, Plan, PlanOptions, Verify, _as_changed
from envdoctor.fix.wheels import norm_name
from envdoctor.fix_choice import FixChoice

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def torch_fixes(report: Report, component: str) -> list[Any]:
    """The torch-changing fixes of the component's (and torch's) findings, in the order `check` prints them."""
    return [fx for f in report.findings if f.component in (component, "torch") for fx in f.fixes
            if fx.strategy == "torch"]


def plan_torch(report: Report, tables: Tables, opts: PlanOptions, plan: Plan, component: str) -> None:
    """Changes to torch itself, as the checks' findings give them (`Fix.strategy == "torch"`): one action per pip
    install of each choice, carried out only with --allow-torch-change."""
    fixes = torch_fixes(report, component)
    if not fixes:
        plan.notes.append(f"{component}: no automatic fix; see `envdoctor check` for the cause and the manual fix")
        return
    seen: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    dist_names = set(mmcv_dist_names(tables))
    for fx in fixes:
        if fx.choice is None:
            plan.notes.append(f"{component}: a torch change without a choice (a report of an older envdoctor): "
                              "run it yourself: " + " ; ".join(fx.commands or [fx.description]))
            continue
        key = tuple(fx.choice.requirements), tuple(s for step in fx.choice.installs for s in step.sources)
        if key not in seen:  # the same change for this environment and for a new one
            seen.append(key)
            _torch_choice_actions(report, opts, plan, component, _as_changed(fx.choice, opts), dist_names)


def plan_torch_itself(report: Report, opts: PlanOptions, plan: Plan, tables: Tables) -> None:
    """`import torch` fails (ED201 …) and no repair of torchvision or mmcv planned a change of torch: the torch
    change `check` advises for torch itself, as any torch change (only with --allow-torch-change)."""
    status = state(report, "torch")
    if status not in FAILED or any(a.kind == "torch" for a in plan.actions):
        return
    from envdoctor.fix.plan import Problem

    ids = sorted({f.id for f in report.findings if f.component == "torch" and f.severity == "error"})
    plan.problems.append(Problem("torch", status, load_message(report, "torch", last=True, limit=300), ids))
    for f in report.findings:  # what only the user can do, which `check` prints first (the VC++ runtime)
        if f.id in ids:
            plan.notes += [f"torch: by hand, as `envdoctor check` says: {fx.description}" for fx in f.fixes
                           if fx.strategy is None and fx.choice is None]
    if opts.strategy != "auto":
        plan.notes.append("torch: its repair changes torch: planned with --strategy auto (with --allow-torch-change)")
        return
    plan_torch(report, tables, opts, plan, "torch")


def plan_gpu(report: Report, opts: PlanOptions, plan: Plan, tables: Tables) -> None:
    """The driver and GPU errors (ED102 driver too old for this CUDA build, ED103 GPU not compiled for): the torch
    build `check` advises, as any torch change (only with --allow-torch-change), verified by the finding being
    gone from the fresh probe's checks. Warnings (ED101: a CUDA build on a machine without a driver still runs on
    the CPU) are left as they are."""
    errors = [f for f in report.findings if f.component == "gpu" and f.severity == "error"]
    if not errors:
        return
    from envdoctor.fix.plan import Problem

    ids = sorted({f.id for f in errors})
    plan.problems.append(Problem("gpu", "error", "; ".join(f.title for f in errors), ids))
    if opts.strategy != "auto":
        plan.notes.append(f"gpu: {', '.join(ids)} needs a change of torch: planned with --strategy auto "
                          "(with --allow-torch-change)")
        return
    if any(a.kind == "torch" for a in plan.actions):  # a second change of torch would undo the first one's
        plan.notes.append(f"gpu: {', '.join(ids)}: the change of torch planned above replaces this torch; "
                          "`envdoctor check` after it says whether the driver runs the new one")
        return
    fixes = [fx for f in errors for fx in f.fixes if fx.strategy == "torch"]
    for fx in fixes:
        if fx.choice is None:
            plan.notes.append("gpu: a torch change without a choice (a report of an older envdoctor): run it "
                              "yourself: " + " ; ".join(fx.commands or [fx.description]))
            continue
        _torch_choice_actions(report, opts, plan, "gpu", _as_changed(fx.choice, opts), set(mmcv_dist_names(tables)),
                              gone=ids)
        return  # the first one `check` prints: a second would replace the same torch again
    plan.notes.append("gpu: no automatic fix; see `envdoctor check` for the cause and the manual fix")


def _torch_verify(specs: list[str], dist_names: set[str]) -> Verify:
    names = {norm_name(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}
    if names & dist_names:
        return Verify(description="fresh probe: `import mmcv._ext` loads; `import mmcv.ops` runs",
                      components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"])
    return Verify(description="fresh probe: torch loads", components_ok=["torch"])


def _torch_choice_actions(report: Report, opts: PlanOptions, plan: Plan, component: str, choice: FixChoice,
                          dist_names: set[str], gone: Sequence[str] = ()) -> None:
    py = report.python.executable
    if choice.new_environment:
        why_not = (f"for a new environment (Python of the tables' wheels): create it, then run these commands "
                   f"with its python ({choice.reason})")
    else:
        why_not = "" if opts.allow_torch_change else "changes torch: pass --allow-torch-change to carry it out"
    first = not any(a.kind == "torch" and a.component == component for a in plan.actions)
    for i, step in enumerate(choice.installs):
        specs = list(step.requirements)
        remove = list(choice.remove) if i == 0 else []
        verify = _torch_verify(specs, dist_names)
        if gone:
            verify.gone = list(gone)
            verify.description += f"; {', '.join(gone)} no longer reported"
        plan.actions.append(Action(
            kind="torch", component=component,
            title=("change torch: install " if first and i == 0 else "then install ") + " ".join(specs),
            why=(choice.reason if component in ("gpu", "torch") else
                 f"no prebuilt {component} fits the installed torch; this torch has one"),
            changes=[f"removes {d}" for d in remove] + [f"installs {' '.join(specs)} (replacing what is installed)"],
            commands=choice.commands(step=i),
            undo=f"envdoctor fix --undo --python {shell.program(py, report.host.os)}",
            verify=verify, remove=remove, install=specs, sources=list(step.sources), applies=not why_not,
            not_applied_because=why_not, choice=choice,
        ))
