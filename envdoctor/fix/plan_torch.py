"""The `torch` strategy's actions: the checks' fixes that change torch itself (`Fix.strategy == "torch"`), printed,
and carried out only with --allow-torch-change: one action per pip install of the fix's FixChoice. A torch fix
without a choice (a report of an older envdoctor) is a note: its commands are for the user to run.

Kept apart from plan.py (like plan_build.py) so that the planner of the repairs and this one change independently.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from envdoctor import commandline as shell
from envdoctor.fact_readers import mmcv_dist_names
from envdoctor.facts import Report
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


def _torch_verify(specs: list[str], dist_names: set[str]) -> Verify:
    names = {norm_name(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}
    if names & dist_names:
        return Verify(description="fresh probe: `import mmcv._ext` loads; `import mmcv.ops` runs",
                      components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"])
    return Verify(description="fresh probe: torch loads", components_ok=["torch"])


def _torch_choice_actions(report: Report, opts: PlanOptions, plan: Plan, component: str, choice: FixChoice,
                          dist_names: set[str]) -> None:
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
        plan.actions.append(Action(
            kind="torch", component=component,
            title=("change torch: install " if first and i == 0 else "then install ") + " ".join(specs),
            why=f"no prebuilt {component} fits the installed torch; this torch has one",
            changes=[f"removes {d}" for d in remove] + [f"installs {' '.join(specs)} (replacing what is installed)"],
            commands=choice.commands(step=i),
            undo=f"envdoctor fix --undo --python {shell.program(py, report.host.os)}",
            verify=verify, remove=remove, install=specs, sources=list(step.sources), applies=not why_not,
            not_applied_because=why_not, choice=choice,
        ))
