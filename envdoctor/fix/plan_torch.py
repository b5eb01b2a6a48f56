"""The `torch` strategy's actions: the checks' fixes that change torch itself (`Fix.strategy == "torch"`), printed,
and carried out only with --allow-torch-change. A fix with a FixChoice gives one action per pip install of the
choice; a fix written as commands only, one action per plain `pip install` command.

Kept apart from plan.py (like plan_build.py) so that the planner of the repairs and this one change independently.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any, Optional

from envdoctor import commandline as shell
from envdoctor.fact_readers import mmcv_dist_names, mmcv_dists
from envdoctor.facts import Report
from envdoctor.fix.pip_runner import source_args
from envdoctor.fix.plan import PIP_INSTALL, Action, Plan, PlanOptions, Verify, _as_changed, _cmds, _pip
from envdoctor.fix.wheels import norm_name
from envdoctor.fix_choice import FixChoice

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def torch_fixes(report: Report, component: str) -> list[Any]:
    """The torch-changing fixes of the component's (and torch's) findings, in the order `check` prints them."""
    return [fx for f in report.findings if f.component in (component, "torch") for fx in f.fixes
            if fx.strategy == "torch"]


SOURCE_OPTS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f")


def _parse_pip_install(cmd: str) -> Optional[tuple[list[str], list[str]]]:
    """`[python -m] pip install A B --index-url U -f L` -> (specs, source options); None if it is not one."""
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    if len(argv) >= 3 and argv[1:3] == ["-m", "pip"]:
        argv = ["pip"] + argv[3:]
    if argv[:2] != ["pip", "install"]:
        return None
    specs: list[str] = []
    sources: list[str] = []
    it = iter(argv[2:])
    for a in it:
        if a.startswith("-"):
            name, eq, value = a.partition("=")
            if name in SOURCE_OPTS:
                sources += [name, value if eq else next(it, "")]
            elif a == "--no-index":
                sources.append(a)
            # other options (--only-binary, --no-cache-dir, ...) are ours to set
        else:
            specs.append(a)
    return (specs, sources) if specs else None


def plan_torch(report: Report, tables: Tables, opts: PlanOptions, plan: Plan, component: str) -> None:
    """Changes to torch itself, as the checks' findings give them (`Fix.strategy == "torch"`): one action per pip
    install of each choice (a fix written as commands only: per command), carried out only with
    --allow-torch-change."""
    fixes = torch_fixes(report, component)
    if not fixes:
        plan.notes.append(f"{component}: no automatic fix; see `envdoctor check` for the cause and the manual fix")
        return
    seen: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    dist_names = set(mmcv_dist_names(tables))
    for fx in fixes:
        if fx.choice is not None:
            key = tuple(fx.choice.requirements), tuple(s for step in fx.choice.installs for s in step.sources)
            if key not in seen:  # the same change for this environment and for a new one
                seen.append(key)
                _torch_choice_actions(report, opts, plan, component, _as_changed(fx.choice, opts), dist_names)
            continue
        for c in fx.commands:
            parsed = _parse_pip_install(c)
            key = (tuple(parsed[0]), tuple(parsed[1])) if parsed else ((c,), ())
            if key not in seen:  # the same command spelled with another interpreter path
                seen.append(key)
                _torch_command_action(report, opts, plan, component, c, parsed, dist_names,
                                      mmcv_dists(report, tables))


def _torch_verify(specs: list[str], dist_names: set[str]) -> tuple[bool, Verify]:
    names = {norm_name(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}
    if names & dist_names:
        return True, Verify(description="fresh probe: `import mmcv._ext` loads; `import mmcv.ops` runs",
                            components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"])
    return False, Verify(description="fresh probe: torch loads", components_ok=["torch"])


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
        _, verify = _torch_verify(specs, dist_names)
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


def _torch_command_action(report: Report, opts: PlanOptions, plan: Plan, component: str, command: str,
                          parsed: Optional[tuple[list[str], list[str]]], dist_names: set[str],
                          mm_dists: list[str]) -> None:
    """A torch fix a check wrote as a command only (no choice): carried out if it is a plain pip install."""
    py = report.python.executable
    first = not any(a.kind == "torch" and a.component == component for a in plan.actions)
    specs, sources = parsed if parsed else ([], [])
    if opts.index_url:
        sources = source_args(opts.index_url)
    is_mmcv, verify = _torch_verify(specs, dist_names)
    remove = mm_dists if is_mmcv else []
    applies = opts.allow_torch_change and parsed is not None
    install = _cmds([_pip(py, "install", *PIP_INSTALL, *sources, *specs)], report.host.os) if parsed else [command]
    plan.actions.append(Action(
        kind="torch", component=component,
        title=("change torch: install " if first else "then install ") + " ".join(specs or ["(manual step)"]),
        why=f"no prebuilt {component} fits the installed torch; this torch has one",
        changes=[f"removes {d}" for d in remove] + [f"installs {' '.join(specs)} (replacing what is installed)"],
        commands=_cmds([_pip(py, "uninstall", "-y", d) for d in remove], report.host.os) + install,
        undo=f"envdoctor fix --undo --python {shell.program(py, report.host.os)}",
        verify=verify, remove=remove, install=specs, sources=sources, applies=bool(applies),
        not_applied_because="" if applies else (
            "changes torch: pass --allow-torch-change to carry it out" if parsed
            else "not a pip install command envdoctor can carry out; run it yourself"),
    ))
