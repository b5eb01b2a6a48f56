"""Planning: facts + findings + tables -> ordered actions. Pure: reads nothing, runs nothing.

Each action says what it changes, the exact commands, how it is undone and which probe
verifies it. Strategies for a broken `mmcv._ext`, in the default (`auto`) order:
  1. wheel  - the official prebuilt wheel for this torch/CUDA/Python/OS (matrix.mmcv_wheel_for),
              binary only, pip's cache bypassed, every mmcv-family distribution removed first;
  2. compat - install envdoctor's compat layer as the `envdoctor-compat` distribution;
  3. torch  - commands that change torch itself (from the checks' findings): printed, and
              carried out only with --allow-torch-change.
A torchvision that does not pair with torch gets the same wheel treatment (matrix.torchvision_for).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

from envdoctor import matrix
from envdoctor.facts import Report
from envdoctor.fix.compat_install import COMPAT_DIST, wheel_filename
from envdoctor.fix.pip_runner import source_args
from envdoctor.fix.wheels import norm_name
from envdoctor.compat.errors import SERVED_SUMMARY

STRATEGIES = ("auto", "wheel", "compat", "build")
MMCV_DISTS = ("mmcv", "mmcv-full", "mmcv-lite")  # all three install the same `mmcv/` package
# Packages that pin an mmcv range at import time (research/mmcv.md section 3).
CONSUMERS = ("mmdet", "mmsegmentation", "mmdet3d", "mmpose", "mmagic", "mmedit", "mmpretrain", "mmocr",
             "mmaction2", "mmyolo", "mmrotate")
BAD = ("missing", "import_error", "crash", "timeout", "error")
PIP_INSTALL = ("--no-cache-dir", "--only-binary=:all:")


@dataclass
class PlanOptions:
    strategy: str = "auto"
    index_url: Optional[str] = None
    allow_torch_change: bool = False
    pins: dict[str, str] = field(default_factory=dict)  # normalised dist name -> version
    compat_unavailable: Optional[str] = None  # why the compat layer cannot be installed (None = it can)
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
    details: list[str] = field(default_factory=list)  # what will be built and why (the build strategy)
    build: dict[str, Any] = field(default_factory=dict)  # the build strategy's spec, cache hit and source


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
        actions = [Action(**{**a, "verify": Verify(**a["verify"])}) for a in d.get("actions", [])]
        problems = [Problem(**p) for p in d.get("problems", [])]
        return cls(d["python"], d["prefix"], d["strategy"], problems, actions, list(d.get("notes", [])))


def _q(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _status(report: Report, name: str) -> str:
    """The component's state in the same fresh facts `check` judges: one that loads is not missing, whether
    its file exists or something else serves it (the compat layer serving `mmcv._ext`)."""
    comp = report.components.get(name)
    if comp is None:
        return "missing"
    if comp.load is not None and comp.load.status == "ok":
        return "ok"
    if not comp.installed:
        return "missing"
    return comp.load.status if comp.load else "skipped"


def _message(report: Report, name: str) -> str:
    comp = report.components.get(name)
    err = comp.load.error if comp and comp.load else None
    return (err.message.strip().splitlines() or [""])[-1][:300] if err and err.message else ""


def _torch(report: Report) -> tuple[Optional[str], Optional[str]]:
    comp = report.components.get("torch")
    if comp is None or not comp.installed:
        return None, None
    runtime = comp.facts.get("runtime") or {}
    version = runtime.get("version") if isinstance(runtime.get("version"), str) else comp.version
    vpy = comp.facts.get("version_py") or {}
    cuda = runtime.get("cuda") if "cuda" in runtime else vpy.get("cuda")
    return version, cuda if isinstance(cuda, str) else None


def _os_name(report: Report) -> str:
    return {"darwin": "macos"}.get(report.host.os.lower(), report.host.os.lower())


def _py_minor(report: Report) -> str:
    return ".".join(report.python.version.split(".")[:2])


def _installed(report: Report, dist: str) -> Optional[str]:
    pkg = report.packages.get(norm_name(dist))
    return pkg.version if pkg else None


def _finding_ids(report: Report, component: str) -> list[str]:
    return sorted({f.id for f in report.findings if f.component.split(".")[0] == component
                   and f.severity in ("error", "warning")})


def _torch_commands(report: Report, component: str) -> list[str]:
    cmds: list[str] = []
    for f in report.findings:
        if f.component not in (component, "torch"):
            continue
        for fx in f.fixes:
            if fx.strategy == "torch":
                cmds += [c for c in fx.commands if c not in cmds]
    return cmds


def _ask_matrix(fn: Any, notes: list[str], *args: Any, **kw: Any) -> Optional[matrix.WheelChoice]:
    try:
        return fn(*args, **kw)
    except NotImplementedError:
        notes.append(f"the wheel matrix ({fn.__name__}) is not available in this envdoctor build; "
                     "use --pin NAME==VERSION to name the wheel")
        return None


def _pip(python: str, *args: str) -> list[str]:
    return [python, "-m", "pip", *args]


def _wheel_action(report: Report, opts: PlanOptions, component: str, choice: matrix.WheelChoice,
                  remove: list[str], verify: Verify) -> Action:
    py = report.python.executable
    spec = f"{choice.package}=={choice.version}"
    sources = source_args(opts.index_url, choice.find_links, choice.index_url, choice.pip_args)
    commands = [_q(_pip(py, "uninstall", "-y", d)) for d in remove]
    commands.append(_q(_pip(py, "install", *PIP_INSTALL, *sources, spec)))
    changes = [f"removes {d} {_installed(report, d)}" for d in remove]
    old = _installed(report, choice.package)
    changes.append(f"installs {spec}" + (f" (replacing {old})" if old and choice.package not in remove else "")
                   + " and any missing requirement of it (binary wheels only, pip's cache bypassed)")
    return Action(
        kind="wheel", component=component, title=f"install the prebuilt {spec} wheel",
        why=choice.reason or f"{spec} is a prebuilt wheel for this environment",
        changes=changes, commands=commands,
        undo=f"envdoctor fix --undo --python {shlex.quote(py)} (puts back every removed or replaced file "
             "from the backup, byte for byte)",
        verify=verify, remove=remove, install=[spec], sources=sources,
    )


def _plan_mmcv(report: Report, tables: Any, opts: PlanOptions, plan: Plan) -> None:
    mm_dists = [d for d in MMCV_DISTS if _installed(report, d) is not None]
    mmcv_state, ext_state = _status(report, "mmcv"), _status(report, "mmcv._ext")
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
    msg = _message(report, "mmcv") if mmcv_state in BAD else _message(report, "mmcv._ext")
    if served:
        msg = "served by envdoctor's compat layer (a part of the kernels, in PyTorch), not a compiled library"
    if len(mm_dists) > 1:
        msg = (msg + "; " if msg else "") + f"{' and '.join(mm_dists)} are installed over each other"
    plan.problems.append(Problem("mmcv._ext" if mmcv_state not in BAD else "mmcv", status, msg,
                                 _finding_ids(report, "mmcv")))
    order = {"auto": ("wheel", "compat"), "wheel": ("wheel",), "compat": ("compat",),
             "build": ("build",)}[opts.strategy]
    torch_version, torch_cuda = _torch(report)
    for strategy in order:
        if strategy == "build":
            from envdoctor.fix.plan_build import build_action

            if opts.build is None:
                plan.notes.append("build: nothing was decided (no build facts were gathered)")
                return
            action = build_action(report, opts.build, opts.index_url, mm_dists, plan.notes)
            if action is not None:
                plan.actions.append(action)
            return
        if strategy == "wheel":
            choice: Optional[matrix.WheelChoice]
            pin = next(((d, opts.pins[d]) for d in ("mmcv", "mmcv-full") if d in opts.pins), None)
            if pin:
                choice = matrix.WheelChoice(pin[0], pin[1], reason=f"pinned with --pin {pin[0]}=={pin[1]}")
            elif torch_version is None:
                plan.notes.append("wheel: torch is not installed, so no prebuilt mmcv wheel can be chosen")
                continue
            else:
                consumers = {c: v for c in CONSUMERS if (v := _installed(report, c))}
                choice = _ask_matrix(matrix.mmcv_wheel_for, plan.notes, tables, torch_version, torch_cuda,
                                     _py_minor(report), _os_name(report), consumers)
                if choice is None:
                    plan.notes.append(f"wheel: no official prebuilt mmcv wheel for torch {torch_version} "
                                      f"({torch_cuda and 'CUDA ' + torch_cuda or 'CPU'}), Python "
                                      f"{_py_minor(report)}, {report.host.os}")
                    continue
            verify = Verify(
                description=f"fresh probe: `import mmcv._ext` loads in a new process of the target; "
                            f"`import mmcv.ops` runs; {choice.package} {choice.version} is the only mmcv "
                            "distribution",
                components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"],
                present={choice.package: choice.version},
                absent=[d for d in MMCV_DISTS if d != choice.package])
            plan.actions.append(_wheel_action(report, opts, "mmcv", choice, mm_dists, verify))
            return
        if strategy == "compat":
            why_not = opts.compat_unavailable
            if why_not is None and mmcv_state in BAD:
                why_not = f"`import mmcv` itself fails ({mmcv_state}); the compat layer only replaces mmcv._ext"
            if why_not is None and _status(report, "torch") != "ok":
                why_not = "the compat layer runs on torch, which does not import here"
            if why_not:
                plan.notes.append(f"compat: {why_not}")
                continue
            if len(mm_dists) > 1:
                plan.notes.append(f"compat: {' and '.join(mm_dists)} are installed over each other; the compat "
                                  "layer does not repair that (if the verification fails, the fix is rolled back)")
            py = report.python.executable
            wheel = wheel_filename()
            plan.actions.append(Action(
                kind="compat", component="mmcv",
                title="activate envdoctor's compat layer for mmcv._ext (exact kernels in PyTorch)",
                why="no prebuilt mmcv wheel fits this environment; the compat layer serves mmcv._ext's "
                    f"{SERVED_SUMMARY} kernels so unmodified code runs (other ops raise an error naming them)",
                changes=[f"installs the distribution {COMPAT_DIST} (package _envdoctor_compat/ and "
                         "_envdoctor_compat.pth in site-packages); nothing else is touched",
                         "only when the real mmcv._ext cannot load is it served; ENVDOCTOR_COMPAT=0 turns it off"],
                commands=[f"(envdoctor builds {wheel} from its bundled compat layer)",
                          _q(_pip(py, "install", "--no-index", "--no-deps", "--no-cache-dir", wheel))],
                undo=f"envdoctor fix --undo --python {shlex.quote(py)}   or   "
                     f"{_q(_pip(py, 'uninstall', '-y', COMPAT_DIST))}",
                verify=Verify(
                    description="fresh probe: `import mmcv._ext` loads (served by the compat layer); "
                                "`from mmcv.ops import ModulatedDeformConv2dPack` runs in the target",
                    components_ok=["mmcv._ext"],
                    imports=["from mmcv.ops import ModulatedDeformConv2dPack"],
                    present={COMPAT_DIST: ""}),
            ))
            if opts.strategy == "auto":
                from envdoctor.fix.plan_build import build_note

                plan.notes.append(build_note(report))
            return
    if opts.strategy in ("auto", "compat"):
        from envdoctor.fix.plan_build import build_note

        plan.notes.append(build_note(report))
    _plan_torch(report, opts, plan, "mmcv")


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


def _plan_torch(report: Report, opts: PlanOptions, plan: Plan, component: str) -> None:
    """Changes to torch itself, as the checks' findings spell them (`Fix.strategy == "torch"`): one action per
    pip command, carried out only with --allow-torch-change."""
    cmds = _torch_commands(report, component)
    if not cmds:
        plan.notes.append(f"{component}: no automatic fix; see `envdoctor check` for the cause and the manual fix")
        return
    py = report.python.executable
    seen: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    parsed_all: list[Optional[tuple[list[str], list[str]]]] = []
    for c in cmds:
        parsed = _parse_pip_install(c)
        key = (tuple(parsed[0]), tuple(parsed[1])) if parsed else ((c,), ())
        if key in seen:
            continue  # the same command spelled with another interpreter path
        seen.append(key)
        parsed_all.append(parsed)
    mm_dists = [d for d in MMCV_DISTS if _installed(report, d) is not None]
    for i, parsed in enumerate(parsed_all):
        specs, sources = parsed if parsed else ([], [])
        if opts.index_url:
            sources = source_args(opts.index_url)
        names = {norm_name(re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0]) for s in specs}
        is_mmcv = bool(names & set(MMCV_DISTS))
        remove = mm_dists if is_mmcv else []
        applies = opts.allow_torch_change and parsed is not None
        verify = (Verify(description="fresh probe: `import mmcv._ext` loads; `import mmcv.ops` runs",
                         components_ok=["mmcv", "mmcv._ext"], imports=["import mmcv.ops"]) if is_mmcv else
                  Verify(description="fresh probe: torch loads", components_ok=["torch"]))
        command = _q(_pip(py, "install", *PIP_INSTALL, *sources, *specs)) if parsed else seen[i][0][0]
        plan.actions.append(Action(
            kind="torch", component=component,
            title=("then install " if i else "change torch: install ") + " ".join(specs or ["(manual step)"]),
            why=f"no prebuilt {component} fits the installed torch; this torch has one",
            changes=[f"removes {d}" for d in remove] + [f"installs {' '.join(specs)} (replacing what is installed)"],
            commands=[_q(_pip(py, "uninstall", "-y", d)) for d in remove] + [command],
            undo=f"envdoctor fix --undo --python {shlex.quote(py)}",
            verify=verify, remove=remove, install=specs, sources=sources, applies=bool(applies),
            not_applied_because="" if applies else (
                "changes torch: pass --allow-torch-change to carry it out" if parsed
                else "not a pip install command envdoctor can carry out; run it yourself"),
        ))


def _plan_torchvision(report: Report, tables: Any, opts: PlanOptions, plan: Plan) -> None:
    tv = report.components.get("torchvision")
    if tv is None or not tv.installed or _status(report, "torch") != "ok":
        return
    tv_state, ops_state = _status(report, "torchvision"), _status(report, "torchvision.ops")
    if tv_state == "ok" and ops_state in ("ok", "skipped"):
        return
    bad = "torchvision" if tv_state != "ok" else "torchvision.ops"
    plan.problems.append(Problem(bad, _status(report, bad), _message(report, bad),
                                 _finding_ids(report, "torchvision")))
    if opts.strategy == "compat":
        plan.notes.append("torchvision: the compat strategy does not repair torchvision; use --strategy wheel")
        return
    torch_version, torch_cuda = _torch(report)
    choice: Optional[matrix.WheelChoice]
    if "torchvision" in opts.pins:
        choice = matrix.WheelChoice("torchvision", opts.pins["torchvision"],
                                    reason=f"pinned with --pin torchvision=={opts.pins['torchvision']}")
    else:
        choice = _ask_matrix(matrix.torchvision_for, plan.notes, tables, torch_version or "", torch_cuda,
                             _py_minor(report))
    if choice is None:
        _plan_torch(report, opts, plan, "torchvision")
        return
    verify = Verify(description="fresh probe: `import torchvision` and torchvision.ops.nms run in a new process",
                    components_ok=["torchvision", "torchvision.ops"], present={"torchvision": choice.version})
    plan.actions.append(_wheel_action(report, opts, "torchvision", choice, [], verify))


def make_plan(report: Report, tables: Any, opts: PlanOptions) -> Plan:
    if opts.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {opts.strategy}")
    plan = Plan(python=report.python.executable, prefix=report.python.prefix, strategy=opts.strategy)
    _plan_torchvision(report, tables, opts, plan)
    _plan_mmcv(report, tables, opts, plan)
    if plan.runnable and "pip" not in report.packages:
        for a in plan.runnable:
            a.applies = False
            a.not_applied_because = "the target has no pip (install it with `python -m ensurepip`)"
    return plan
