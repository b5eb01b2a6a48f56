"""Advice = action for the fixes that change torch itself (ED1xx driver/GPU, ED2xx torch, ED701's missing
torch): each carries a FixChoice of strategy "torch", and `fix`'s planner (envdoctor/fix/plan_torch.py) installs
exactly the choice's requirements from its sources, whatever the fix's command text says."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from envdoctor.facts import Component, Fix, Report
from envdoctor.fix.plan import Plan, PlanOptions, make_plan
from envdoctor.fix.plan_torch import plan_torch
from envdoctor.fix.verify import verify
from envdoctor.rules import load_tables
from tests.conftest import ROOT, validate_report
from tests.diagnosed import diagnosed

FACTS = Path(__file__).parent / "data" / "facts"
# recorded fact sets and the torch-changing rules they trigger
TRIGGERS = {
    "linux_driver470_torch212_cu121": {"ED102"},
    "linux_rtx5090_torch251_cu124": {"ED103"},
    "linux_torch2141_cu130_tv0280": {"ED101"},
    "linux_rtx3090_torch213_cpu": {"ED202"},
    "windows_winerror1114_c10": {"ED101", "ED201"},
}


def _load(name: str) -> Report:
    return Report.from_dict(json.loads((FACTS / f"{name}.json").read_text(encoding="utf-8")))


def _missing_torch() -> Report:
    """An extension that links libc10.so in an environment without torch (ED701's torch fix)."""
    report = _load("real_mmcv-lite")
    report.components.pop("torch", None)
    report.packages.pop("torch", None)
    report.components["mmcv._ext"] = Component(name="mmcv._ext", installed=True, facts={"binary": {
        "path": "/envs/x/lib/python3.11/site-packages/mmcv/_ext.cpython-311-x86_64-linux-gnu.so", "format": "elf",
        "missing_libraries": [{"name": "libc10.so", "needed_by": "_ext.cpython-311-x86_64-linux-gnu.so"}]}})
    return report


def _torch_fixes(report: Report, rules: set[str]) -> list[tuple[str, Fix]]:
    return [(f.id, fx) for f in report.findings if f.id in rules for fx in f.fixes if fx.strategy == "torch"]


def _planned(report: Report, component: str, opts: PlanOptions = PlanOptions()) -> list[Any]:
    plan = Plan(python=report.python.executable, prefix=report.python.prefix, strategy="auto")
    plan_torch(report, load_tables(), opts, plan, component)
    return plan.actions


CASES = [(name, rules) for name, rules in TRIGGERS.items()] + [("missing-torch", {"ED701"})]


@pytest.mark.parametrize("name,rules", CASES, ids=[c[0] for c in CASES])
def test_torch_fixes_carry_a_choice_and_plan_it(name: str, rules: set[str]):
    tables = load_tables()
    report = diagnosed(_missing_torch() if name == "missing-torch" else _load(name), tables)
    validate_report(json.loads(json.dumps(report.to_dict())))
    fixes = _torch_fixes(report, rules)
    assert {rid for rid, _ in fixes} == rules, [f.id for f in report.findings]
    for rid, fx in fixes:
        choice = fx.choice
        assert choice is not None and choice.strategy == "torch", (rid, fx)
        assert fx.commands == choice.commands()
        finding = next(f for f in report.findings if f.id == rid)
        assert choice.component == finding.component
        assert choice.python == report.python.executable
        assert [r.split("==")[0] for r in choice.requirements][:1] == ["torch"]
        if rid != "ED701":  # a build from PyTorch's index of its variant, the table row named
            assert choice.installs[0].sources[0] in ("--index-url", "--extra-index-url", "--find-links")
            assert choice.source.startswith("https://")
        # the planner turns the choice into actions, even with the printed text tampered with
        tampered = dataclasses.replace(fx, commands=["pip install something-else==0 --index-url https://x.invalid"])
        alone = dataclasses.replace(report, findings=(dataclasses.replace(finding, fixes=[tampered]),))
        actions = _planned(alone, finding.component, PlanOptions(allow_torch_change=True))
        assert [a.install for a in actions] == [list(s.requirements) for s in choice.installs]
        assert [a.sources for a in actions] == [list(s.sources) for s in choice.installs]
        assert [line for a in actions for line in a.commands] == choice.commands()
        assert all(a.choice == choice and a.applies for a in actions)


def test_a_build_switch_brings_its_dependencies_and_the_same_build_is_replaced():
    """Another build of the installed version is pinned with its local tag (pip replaces it and installs its
    nvidia-* requirements); only a pin equal to the installed version is forced (--force-reinstall --no-deps)."""
    tables = load_tables()
    cpu = diagnosed(_load("linux_rtx3090_torch213_cpu"), tables)
    [(_, fx)] = _torch_fixes(cpu, {"ED202"})
    assert fx.choice is not None and fx.choice.requirements == ["torch==2.13.0+cu126"]
    assert not fx.choice.installs[0].replace and "--no-deps" not in fx.commands[0]
    win = diagnosed(_load("windows_winerror1114_c10"), tables)
    [(_, same)] = _torch_fixes(win, {"ED201"})
    assert same.choice is not None and same.choice.requirements == ["torch==2.9.1+cu128"]
    assert same.choice.installs[0].replace and "--force-reinstall --no-deps" in same.commands[-1]


def test_plan_torch_parses_no_command_text():
    tree = ast.parse((ROOT / "envdoctor" / "fix" / "plan_torch.py").read_text(encoding="utf-8"))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names}
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "shlex" not in imported and not defined & {"_parse_pip_install", "_torch_command_action"}


def test_no_local_tag_where_pytorchs_wheels_have_none():
    """PyTorch's cpu index has Linux aarch64 wheels without `+cpu` (torch-2.1.1-cp310-cp310-manylinux_2_17_aarch64
    ...whl), so a `+cpu` pin there finds nothing; the untagged pin of the installed version is forced."""
    from envdoctor.checks.advice import torch_choice

    tables = load_tables()
    x86 = _load("linux_rtx3090_torch213_cpu")
    assert x86.packages["torch"].version.startswith("2.13.0")
    arm = dataclasses.replace(x86, host=dataclasses.replace(x86.host, arch="aarch64"))
    tagged = torch_choice(x86, tables, "torch", "2.13.0", None, "r")
    untagged = torch_choice(arm, tables, "torch", "2.13.0", None, "r")
    assert tagged.requirements == ["torch==2.13.0+cpu"] and untagged.requirements == ["torch==2.13.0"]
    assert untagged.installs[0].replace  # pip would otherwise answer "already satisfied" for 2.13.0+cpu
    assert torch_choice(arm, tables, "torch", "2.13.0", "12.6", "r").requirements == ["torch==2.13.0+cu126"]


@pytest.mark.parametrize("name,rid", [("linux_driver470_torch212_cu121", "ED102"),
                                      ("linux_rtx5090_torch251_cu124", "ED103")])
def test_a_driver_or_gpu_error_plans_the_torch_build_check_advises(name: str, rid: str):
    """`check` says the build it advises for ED102/ED103 is "applied by `envdoctor fix` only with
    --allow-torch-change": `fix` plans exactly it (it once planned nothing: only mmcv and torchvision were
    repaired), verified by the finding being gone."""
    tables = load_tables()
    report = diagnosed(_load(name), tables)
    report = dataclasses.replace(report, packages={**report.packages, "pip": report.packages["torch"]})
    [(_, fx)] = _torch_fixes(report, {rid})
    for allow in (False, True):
        plan = make_plan(report, tables, PlanOptions(allow_torch_change=allow))
        [problem] = plan.problems
        assert (problem.component, problem.findings) == ("gpu", [rid])
        assert [(a.kind, a.component, a.choice) for a in plan.actions] == [("torch", "gpu", fx.choice)]
        action = plan.actions[0]
        assert action.commands == fx.commands and action.applies is allow
        assert action.verify.gone == [rid] and action.verify.components_ok == ["torch"]
    other = make_plan(report, tables, PlanOptions(strategy="compat", allow_torch_change=True))
    assert not [a for a in other.actions if a.component == "gpu"]
    assert any(rid in n and "--strategy auto" in n for n in other.notes)


def test_a_warning_of_the_driver_plans_nothing():
    """ED101 (a CUDA build with no driver: it runs on the CPU) is left as it is."""
    tables = load_tables()
    report = diagnosed(_load("linux_torch2141_cu130_tv0280"), tables)
    assert any(f.id == "ED101" for f in report.findings)
    plan = make_plan(report, tables, PlanOptions(allow_torch_change=True))
    assert not [a for a in plan.actions if a.component == "gpu"]
    assert not [p for p in plan.problems if p.component == "gpu"]


def test_the_verification_fails_while_the_finding_is_still_reported():
    tables = load_tables()
    report = diagnosed(_load("linux_driver470_torch212_cu121"), tables)
    report = dataclasses.replace(report, packages={**report.packages, "pip": report.packages["torch"]})
    plan = make_plan(report, tables, PlanOptions(allow_torch_change=True))
    assert verify(plan, report, {}, "python", 10) == [
        f"ED102 is still reported: {next(f.title for f in report.findings if f.id == 'ED102')}"]
    healed = dataclasses.replace(report, findings=tuple(f for f in report.findings if f.id != "ED102"))
    assert verify(plan, healed, {}, "python", 10) == []


def test_a_missing_nvidia_library_brings_torchs_requirements_not_its_files_again():
    """ED201 "libcudnn.so.9 is not found" (the nvidia-* wheels missing: torch installed with --no-deps): the fix
    installs the same build without --no-deps, so pip installs what it requires and is missing; the forced
    reinstall of torch's own files (--force-reinstall --no-deps) would leave them out again."""
    from envdoctor.facts import LoadError, LoadResult

    tables = load_tables()
    report = _load("linux_torch2141_cu130_tv0280")
    torch = report.components["torch"]
    error = LoadError(type="ImportError", message="libcudnn.so.9: cannot open shared object file: No such file or "
                                                  "directory")
    report.components["torch"] = dataclasses.replace(torch, load=LoadResult(status="import_error", error=error))
    # installed from PyTorch's cu130 index (its local tag): the same build again, which REPLACE would force
    report.packages["torch"] = dataclasses.replace(report.packages["torch"], version="2.14.1+cu130")
    report = diagnosed(report, tables)
    [(_, fx)] = _torch_fixes(report, {"ED201"})
    assert fx.choice is not None and not fx.choice.installs[0].replace
    installed = report.packages["torch"].version
    assert fx.choice.requirements == [f"torch=={installed}"]
    assert all("--no-deps" not in c and "--force-reinstall" not in c for c in fx.commands), fx.commands
    assert "requires and is missing" in fx.description


def test_one_change_of_torch_per_plan():
    """When the repair of mmcv already changes torch, the driver's error gets a note, not a second change of
    torch that would undo the first one's."""
    from envdoctor.fix.plan import Action, Verify
    from envdoctor.fix.plan_torch import plan_gpu

    tables = load_tables()
    report = diagnosed(_load("linux_driver470_torch212_cu121"), tables)
    plan = Plan(python=report.python.executable, prefix=report.python.prefix, strategy="auto")
    plan.actions.append(Action(kind="torch", component="mmcv", title="change torch", why="", changes=[], commands=[],
                               undo="", verify=Verify(description="")))
    plan_gpu(report, PlanOptions(allow_torch_change=True), plan, tables)
    assert [a.component for a in plan.actions] == ["mmcv"]
    assert [p.findings for p in plan.problems] == [["ED102"]]
    assert any("ED102" in n and "planned above" in n for n in plan.notes)


def test_a_torch_that_does_not_import_is_a_problem_with_its_fix_planned():
    """`import torch` fails (WinError 1114) with neither torchvision nor mmcv installed: `fix` said "nothing to fix:
    torch, torchvision and mmcv load as they should". Now the problem is torch, the manual fix `check` prints first
    is a note, and the torch change it advises is the plan's action."""
    from envdoctor.render.fix import plan_text

    tables = load_tables()
    report = diagnosed(_load("windows_winerror1114_c10"), tables)
    report = dataclasses.replace(report, packages={**report.packages, "pip": report.packages["torch"]})
    [(_, fx)] = _torch_fixes(report, {"ED201"})
    plan = make_plan(report, tables, PlanOptions(allow_torch_change=True))
    assert [(p.component, p.status, p.findings) for p in plan.problems] == [("torch", "import_error", ["ED201"])]
    assert [(a.kind, a.component, a.choice, a.applies) for a in plan.actions] == [("torch", "torch", fx.choice, True)]
    assert plan.actions[0].verify.components_ok == ["torch"]
    assert any(n.startswith("torch: by hand") and "Visual C++ Redistributable" in n for n in plan.notes)
    assert "nothing to fix" not in plan_text(plan, applying=False)
