"""Planning: facts + findings -> ordered actions. Pure: reads nothing, runs nothing.

Each action says what it changes, the exact commands, how it is undone and which probe
verifies it. What to install is never decided here: the checks decided it once, from the rule
tables, as the FixChoice their findings' fixes carry (envdoctor/fix_choice.py), and the plan
carries out the choice of the first finding `check` prints for the component (the report's
findings are in display order). Strategies for a broken `mmcv._ext`, in the default (`auto`) order:
  1. wheel  - the official prebuilt wheel the checks chose, binary only, pip's cache bypassed,
              every mmcv-family distribution removed first;
  2. compat - install envdoctor's compat layer as the `envdoctor-compat` distribution;
  3. torch  - the checks' choices that change torch itself: printed, and carried out only
              with --allow-torch-change.
A torchvision that does not pair with torch gets the wheel the checks chose for it.
--pin and --index-url are the user's changes to the choice (the action carries the changed one).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from envdoctor import op_coverage
from envdoctor.fact_readers import (consumers, installed_version, load_message, mmcv_dist_names, mmcv_dists,
                                    mmcv_version, os_name, python_minor, state, torch_cuda, torch_version)
from envdoctor.facts import FAILED, Report
from envdoctor.fix_choice import FixChoice, PipInstall
from envdoctor.fix.compat_install import COMPAT_DIST, wheel_filename
from envdoctor.fix.pip_runner import source_args
from envdoctor.fix.wheels import norm_name
from envdoctor import commandline as shell
from envdoctor.compat.errors import SERVED_SUMMARY
from envdoctor.options import FIX_STRATEGIES

if TYPE_CHECKING:
    from envdoctor.rules import Tables

BAD = ("missing", *FAILED)
PIP_INSTALL = ("--no-cache-dir", "--only-binary=:all:")


@dataclass
class PlanOptions:
    strategy: str = "auto"
    index_url: Optional[str] = None
    allow_torch_change: bool = False
    pins: dict[str, str] = field(default_factory=dict)  # normalised dist name -> version
    compat_unavailable: Optional[str] = None  # why the compat layer cannot be installed (None = it can)
    site_writable: Optional[bool] = None  # the target's site-packages, as the caller observed it (fix/user_site.py)
    build: Any = None  # envdoctor.build.choice.BuildChoice for --strategy build (gathered before planning)


@dataclass
class Verify:
    description: str
    components_ok: list[str] = field(default_factory=list)  # load status "ok" in the fresh probe
    imports: list[str] = field(default_factory=list)  # statements run in the target, must succeed
    present: dict[str, str] = field(default_factory=dict)  # dist -> exact version ("" = any)
    absent: list[str] = field(default_factory=list)  # dists that must be gone
    ops: list[str] = field(default_factory=list)  # mmcv ops run with the compiled _ext (probe/ops_verify.py)
    ops_device: str = "auto"  # "auto": the GPU when torch sees one; "cpu": CPU kernels only were built (--cpu)
    gone: list[str] = field(default_factory=list)  # rule ids the fresh probe's checks must no longer report


@dataclass
class Action:
    kind: str  # wheel | compat | build | torch
    component: str  # what it repairs: mmcv | torchvision
    title: str
    why: str
    changes: list[str]
    commands: list[str]
    undo: str
    verify: Verify
    remove: list[str] = field(default_factory=list)  # distributions uninstalled first
    install: list[str] = field(default_factory=list)  # requirement specs, e.g. "mmcv==2.2.0"
    sources: list[str] = field(default_factory=list)  # pip arguments: where wheels come from
    applies: bool = True  # False: printed only
    not_applied_because: str = ""
    user_site: bool = False  # pip runs with the user site visible and --user (fix/user_site.py)
    # "envdoctor": the compat wheel, not installed yet, is written by envdoctor itself (fix/own_wheel.py), not pip
    installer: str = "pip"
    coverage: list[str] = field(default_factory=list)  # compat: what it serves of _ext and of each consumer's ops
    details: list[str] = field(default_factory=list)  # what will be built and why (the build strategy)
    build: dict[str, Any] = field(default_factory=dict)  # the build strategy's spec, cache hit and source
    choice: Optional[FixChoice] = None  # the finding's choice this action carries out (as --pin/--index-url changed it)


@dataclass
class Problem:
    component: str
    status: str
    message: str
    findings: list[str] = field(default_factory=list)


@dataclass
class Plan:
    python: str
    prefix: str
    strategy: str
    problems: list[Problem] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> list[Action]:
        return [a for a in self.actions if a.applies]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        actions = [Action(**{**a, "verify": Verify(**a["verify"]),
                             "choice": FixChoice.from_dict(a["choice"]) if a.get("choice") else None})
                   for a in d.get("actions", [])]
        problems = [Problem(**p) for p in d.get("problems", [])]
        return cls(d["python"], d["prefix"], d["strategy"], problems, actions, list(d.get("notes", [])))


def _q(args: list[str], os_name: str) -> str:
    """One command, quoted to paste on the target's OS (cmd.exe's rules on Windows)."""
    return shell.command_line(args, os_name)


def _cmds(argvs: list[list[str]], os_name: str) -> list[str]:
    """Commands to show; on Windows each followed by its PowerShell form where that is other text."""
    return [line for argv in argvs for line in shell.forms(argv, os_name)]


def _finding_ids(report: Report, component: str) -> list[str]:
    return sorted({f.id for f in report.findings if f.component.split(".")[0] == component
                   and f.severity in ("error", "warning")})


def advised(report: Report, component: str, strategies: tuple[str, ...]) -> Optional[FixChoice]:
    """The choice of the first fix `check` prints for the component, among these strategies."""
    return next((fx.choice for f in report.findings for fx in f.fixes
                 if fx.choice is not None and fx.choice.component == component
                 and fx.choice.strategy in strategies), None)


def _as_changed(choice: FixChoice, opts: PlanOptions) -> FixChoice:
    """The choice with the user's --index-url in place of the sources the checks chose."""
    if not opts.index_url:
        return choice
    sources = tuple(source_args(opts.index_url))
    return dataclasses.replace(choice, installs=tuple(dataclasses.replace(s, sources=sources)
                                                      for s in choice.installs))


def _pinned(report: Report, tables: Tables, opts: PlanOptions, component: str) -> Optional[FixChoice]:
    """--pin NAME==VERSION: the user's own choice of what to install for the component."""
    names = ("mmcv", "mmcv-full") if component == "mmcv" else ("torchvision",)
    pin = next(((d, opts.pins[d]) for d in names if d in opts.pins), None)
    if pin is None:
        return None
    return FixChoice(strategy="wheel", component=component, python=report.python.executable, os=os_name(report),
                     remove=tuple(mmcv_dists(report, tables)) if component == "mmcv" else (),
                     installs=(PipInstall((f"{pin[0]}=={pin[1]}",), replace=component == "torchvision"),),
                     reason=f"pinned with --pin {pin[0]}=={pin[1]}")


def _pip(python: str, *args: str) -> list[str]:
    return [python, "-m", "pip", *args]


def _wheel_action(report: Report, opts: PlanOptions, choice: FixChoice, verify: Verify) -> Action:
    choice = _as_changed(choice, opts)
    py = report.python.executable
    [spec] = choice.requirements
    name = spec.partition("==")[0]
    changes = [f"removes {d} {installed_version(report, d)}" for d in choice.remove]
    old = installed_version(report, name)
    changes.append(f"installs {spec}" + (f" (replacing {old})" if old and name not in choice.remove else "")
                   + " and any missing requirement of it (binary wheels only, pip's cache bypassed)")
    return Action(
        kind="wheel", component=choice.component, title=f"install the prebuilt {spec} wheel",
        why=choice.reason or f"{spec} is a prebuilt wheel for this environment",
        changes=changes, commands=choice.commands(),
        undo=f"envdoctor fix --undo --python {shell.program(py, report.host.os)} (puts back every removed or "
             "replaced file from the backup, byte for byte)",
        verify=verify, remove=list(choice.remove), install=[spec], sources=list(choice.installs[0].sources),
        choice=choice,
    )


def _plan_mmcv(report: Report, tables: Tables, opts: PlanOptions, plan: Plan) -> None:
    mm_dists = mmcv_dists(report, tables)
    mmcv_state, ext_state = state(report, "mmcv"), state(report, "mmcv._ext")
    installed = bool(report.components.get("mmcv") and report.components["mmcv"].installed) or bool(mm_dists)
    if not installed:
        return
    broken = mmcv_state in BAD or ext_state != "ok"
    served = False
    if opts.strategy == "build" and not broken:
        from envdoctor.fix.plan_build import compat_serving

        served = compat_serving(report)  # what loads is the compat layer; the build replaces it
    if not broken and not served and len(mm_dists) <= 1:
        return
    status = mmcv_state if mmcv_state in BAD else ("compat" if served else ext_state)
    msg = load_message(report, "mmcv" if mmcv_state in BAD else "mmcv._ext", last=True, limit=300)
    if served:
        msg = "served by envdoctor's compat layer (a part of the kernels, in PyTorch), not a compiled library"
    if len(mm_dists) > 1:
        msg = (msg + "; " if msg else "") + f"{' and '.join(mm_dists)} are installed over each other"
    plan.problems.append(Problem("mmcv._ext" if mmcv_state not in BAD else "mmcv", status, msg,
                                 _finding_ids(report, "mmcv")))
    order = {"auto": ("wheel", "compat"), "wheel": ("wheel",), "compat": ("compat",),
             "build": ("build",)}[opts.strategy]
    for strategy in order:
        if strategy == "build":
            from envdoctor.fix.plan_build import build_action

            if opts.build is None:
                plan.notes.append("build: nothing was decided (no build facts were gathered)")
                return
            action = build_action(report, opts.build, opts.index_url, mm_dists, plan.notes, mmcv_dist_names(tables))
            if action is not None:
                plan.actions.append(action)
            return
        if strategy == "wheel":
            choice = _pinned(report, tables, opts, "mmcv") or advised(report, "mmcv", ("wheel", "compat"))
            if choice is None or choice.strategy != "wheel":
                choice = advised(report, "mmcv", ("wheel",)) if opts.strategy == "wheel" else None
            if choice is None:
                plan.notes.append(_no_wheel_note(report))
                continue
            package, version = next(iter(choice.pins().items()))
            verify = Verify(
                description=f"fresh probe: `import mmcv._ext` loads in a new process of the target; "
                            f"`import mmcv.ops` runs; {package} {version} is the only mmcv distribution",
                components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"],
                present={package: version},
                absent=[d for d in mmcv_dist_names(tables) if d != package])
            plan.actions.append(_wheel_action(report, opts, choice, verify))
            return
        if strategy == "compat":
            why_not = opts.compat_unavailable
            if why_not is None and mmcv_state in BAD:
                why_not = f"`import mmcv` itself fails ({mmcv_state}); the compat layer only replaces mmcv._ext"
            if why_not is None and state(report, "torch") != "ok":
                why_not = "the compat layer runs on torch, which does not import here"
            if why_not:
                plan.notes.append(f"compat: {why_not}")
                continue
            if len(mm_dists) > 1:
                plan.notes.append(f"compat: {' and '.join(mm_dists)} are installed over each other; the compat "
                                  "layer does not repair that (if the verification fails, the fix is rolled back)")
            py = report.python.executable
            wheel = wheel_filename()
            own = COMPAT_DIST not in report.packages  # nothing of it to replace: no pip needed (fix/own_wheel.py)
            compat = advised(report, "mmcv", ("compat",)) or FixChoice(
                strategy="compat", component="mmcv", python=py, os=os_name(report),
                reason=f"chosen with --strategy {opts.strategy}")
            plan.actions.append(Action(
                kind="compat", component="mmcv",
                title="activate envdoctor's compat layer for mmcv._ext (exact kernels in PyTorch)",
                why="no prebuilt mmcv wheel fits this environment; the compat layer serves mmcv._ext's "
                    f"{SERVED_SUMMARY} kernels so unmodified code runs (other ops raise an error naming them)",
                changes=[f"installs the distribution {COMPAT_DIST} (package _envdoctor_compat/ and "
                         "_envdoctor_compat.pth in site-packages); nothing else is touched",
                         "only when the real mmcv._ext cannot load is it served; ENVDOCTOR_COMPAT=0 turns it off"],
                commands=[f"(envdoctor builds {wheel} from its bundled compat layer" + (
                              " and installs it itself, as this pip command would:)" if own else ")"),
                          *_cmds([_pip(py, "install", "--no-index", "--no-deps", "--no-cache-dir", wheel)],
                                 report.host.os)],
                installer="envdoctor" if own else "pip",
                undo=f"envdoctor fix --undo --python {shell.program(py, report.host.os)}   or   "
                     f"{_q(_pip(py, 'uninstall', '-y', COMPAT_DIST), report.host.os)}",
                coverage=_compat_coverage(report, tables),
                verify=Verify(
                    description="fresh probe: `import mmcv._ext` loads (served by the compat layer); "
                                "`from mmcv.ops import ModulatedDeformConv2dPack` runs in the target",
                    components_ok=["mmcv._ext"],
                    imports=["from mmcv.ops import ModulatedDeformConv2dPack"],
                    present={COMPAT_DIST: ""}),
                choice=compat,
            ))
            if opts.strategy == "auto":
                from envdoctor.fix.plan_build import build_note

                plan.notes.append(build_note(report))
            return
    if opts.strategy in ("auto", "compat"):
        from envdoctor.fix.plan_build import build_note

        plan.notes.append(build_note(report))
    from envdoctor.fix.plan_torch import plan_torch

    plan_torch(report, tables, opts, plan, "mmcv")


def _no_wheel_note(report: Report) -> str:
    """Why the plan has no wheel: `check` advised none, and what it says about these facts."""
    if torch_version(report) is None:
        return "wheel: torch is not installed, so no prebuilt mmcv wheel can be chosen"
    if state(report, "torch") != "ok":
        return "wheel: torch does not import here; `envdoctor check` says what to repair first"
    cuda = torch_cuda(report)
    return (f"wheel: no official prebuilt mmcv wheel for torch {torch_version(report)} "
            f"({cuda and 'CUDA ' + cuda or 'CPU'}), Python {python_minor(report)}, {os_name(report)}")


def _compat_coverage(report: Report, tables: Tables) -> list[str]:
    """Before applying: how much of this mmcv's _ext the compat layer to be installed serves, and whether it
    covers the op families of each installed consumer (read from the layer itself, so new kernels count)."""
    served = op_coverage.bundled_served()
    if served is None:
        return ["(which kernels the compat layer serves could not be read from envdoctor/compat/ext.py)"]
    if tables is None:
        return []
    version = mmcv_version(report)
    lines = [f"mmcv {version or '?'}'s _ext: " + op_coverage.served_phrase(op_coverage.ext_coverage(tables, version,
                                                                                              served))]
    users = op_coverage.consumer_coverage(tables, consumers(report, tables), served)
    lines += [op_coverage.consumer_line(u) for u in users]
    if not users:
        lines.append("no installed OpenMMLab package (mmdet, mmseg, mmrotate, mmagic, mmdet3d …) to check")
    return lines


def _plan_torchvision(report: Report, tables: Tables, opts: PlanOptions, plan: Plan) -> None:
    tv = report.components.get("torchvision")
    if tv is None or not tv.installed or state(report, "torch") != "ok":
        return
    tv_state, ops_state = state(report, "torchvision"), state(report, "torchvision.ops")
    if tv_state == "ok" and ops_state in ("ok", "skipped"):
        return
    bad = "torchvision" if tv_state != "ok" else "torchvision.ops"
    plan.problems.append(Problem(bad, state(report, bad), load_message(report, bad, last=True, limit=300),
                                 _finding_ids(report, "torchvision")))
    if opts.strategy == "compat":
        plan.notes.append("torchvision: the compat strategy does not repair torchvision; use --strategy wheel")
        return
    choice = _pinned(report, tables, opts, "torchvision") or advised(report, "torchvision", ("wheel",))
    if choice is None:
        from envdoctor.fix.plan_torch import plan_torch

        plan_torch(report, tables, opts, plan, "torchvision")
        return
    version = choice.pins()["torchvision"]
    verify = Verify(description="fresh probe: `import torchvision` and torchvision.ops.nms run in a new process",
                    components_ok=["torchvision", "torchvision.ops"], present={"torchvision": version})
    plan.actions.append(_wheel_action(report, opts, choice, verify))


def make_plan(report: Report, tables: Tables, opts: PlanOptions) -> Plan:
    if opts.strategy not in FIX_STRATEGIES:
        raise ValueError(f"unknown strategy {opts.strategy}")
    plan = Plan(python=report.python.executable, prefix=report.python.prefix, strategy=opts.strategy)
    _plan_torchvision(report, tables, opts, plan)
    _plan_mmcv(report, tables, opts, plan)
    from envdoctor.fix.plan_torch import plan_gpu, plan_torch_itself

    plan_torch_itself(report, opts, plan, tables)
    plan_gpu(report, opts, plan, tables)
    if plan.runnable and "pip" not in report.packages:
        for a in plan.runnable:
            if a.installer == "envdoctor":
                continue
            a.applies = False
            a.not_applied_because = "the target has no pip (install it with `python -m ensurepip`)"
    _place(report, opts, plan)
    return plan


def _place(report: Report, opts: PlanOptions, plan: Plan) -> None:
    """Where the distributions each pip action touches live (site-packages or the user site)."""
    from envdoctor.fix.user_site import placement

    for a in plan.runnable:
        dists = list(a.remove) + [re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0] for spec in a.install]
        if not dists:
            continue
        pl = placement(report, [norm_name(d) for d in dists], opts.site_writable)
        if pl.refuse:
            a.applies = False
            a.not_applied_because = pl.refuse
        elif pl.user:
            a.user_site = True
            if pl.note and pl.note not in plan.notes:
                plan.notes.append(pl.note)
