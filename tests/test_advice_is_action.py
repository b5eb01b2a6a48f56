"""Advice = action: the fix `check` prints first for a component is exactly what `fix`'s dry-run plan carries out.

The checks decide a fix once, as a FixChoice (envdoctor/fix_choice.py) on the finding's fix; `check` prints its
commands and the planner executes the same object. Compared structurally (the choice, field by field, as the
JSON report carries it) and as commands, over every recorded fact set and every real test environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from envdoctor.facts import Report
from envdoctor.fix.plan import PlanOptions, make_plan
from envdoctor.rules import load_tables
from tests import envs
from tests.diagnosed import diagnosed
from tests.conftest import ROOT, real_env, validate_report

FACTS = sorted((Path(__file__).parent / "data" / "facts").glob("*.json"))
COMPONENTS = ("mmcv", "torchvision", "gpu", "torch")


def first_advice(findings: list[dict[str, Any]], component: str) -> Optional[dict[str, Any]]:
    """The first fix with a choice for the component, in the order `check` prints the findings (for torch itself,
    the driver and the GPU only the errors': `fix` leaves ED101 and ED202, warnings, as they are)."""
    return next((fx for f in findings for fx in f["fixes"]
                 if fx.get("choice") and fx["choice"]["component"] == component
                 and (component not in ("gpu", "torch") or f["severity"] == "error")), None)


def assert_plan_is_advice(findings: list[dict[str, Any]], plan: dict[str, Any], where: str) -> int:
    """Per component: the plan's first action carries the advised choice, and the commands of the actions that
    carry it are the commands `check` printed. Returns how many components had advice."""
    advised = 0
    for component in COMPONENTS:
        advice = first_advice(findings, component)
        actions = [a for a in plan["actions"] if a["component"] == component]
        if advice is None:
            assert all(a.get("choice") is None for a in actions), (where, component, actions)
            continue
        advised += 1
        assert actions, (where, component, advice, plan["notes"])
        assert actions[0]["kind"] == advice["strategy"] == advice["choice"]["strategy"], (where, component)
        if advice["strategy"] == "compat":
            assert advice["commands"] == [line for line in advice["commands"] if "--strategy compat" in line]
        else:  # one action per pip install of the choice: together, exactly the commands `check` printed
            steps = actions[:len(advice["choice"]["installs"])]
            assert [line for a in steps for line in a["commands"]] == advice["commands"], (where, component)
            assert [r for a in steps for r in a["install"]] == \
                [r for step in advice["choice"]["installs"] for r in step["requirements"]]
        assert all(a.get("choice") == advice["choice"] for a in actions[:max(1, len(advice["choice"]["installs"]))]), \
            (where, component)
    return advised


@pytest.mark.parametrize("path", FACTS, ids=[p.stem for p in FACTS])
def test_every_recorded_fact_set_plans_the_fix_check_printed_first(path: Path):
    tables = load_tables()
    report = Report.from_dict(json.loads(path.read_text(encoding="utf-8")))
    report = diagnosed(report, tables)
    printed = json.loads(json.dumps(report.to_dict()))  # what `check --format json` prints
    validate_report(printed)
    # `fix` plans from the report as JSON carries it: the choice must survive the round trip unchanged
    again = Report.from_dict(printed)
    assert [fx.choice for f in again.findings for fx in f.fixes] == \
        [fx.choice for f in report.findings for fx in f.fixes]
    plan = json.loads(json.dumps(make_plan(again, tables, PlanOptions()).to_dict()))
    assert_plan_is_advice(printed["findings"], plan, path.stem)


def _cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ENVDOCTOR_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "envdoctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _json(proc: subprocess.Popen, codes: tuple[int, ...]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in codes, err[-2000:]
    return json.loads(out)


def test_every_real_environment_plans_the_fix_check_printed_first():
    """`envdoctor check --format json` and `envdoctor fix --format json` (a dry run) as a user runs them, on every
    real test environment (tests/envs.py, built and cached by the suite): both commands run at once per env."""
    advised = []
    for name in envs.SPECS:
        prefix = str(real_env(name))
        check, fix = _cli("check", "--python", prefix, "--format", "json"), _cli("fix", "--python", prefix,
                                                                                  "--format", "json")
        printed, fixed = _json(check, (0, 1)), _json(fix, (0,))
        plan = fixed["fix"]["plan"]
        assert fixed["fix"]["applied"] is False
        if assert_plan_is_advice(printed["findings"], plan, name):
            advised.append(name)
    # the environments with something to fix have advice (the rest: a healthy torch, a bare venv)
    assert {"mmcv-lite", "mmcv172-pure", "torch213-tv291", "mmcv-conflict"} <= set(advised), advised


def test_the_planner_cannot_ask_the_rule_tables_what_to_install():
    """The wheel queries live in envdoctor.tables_query (and fact_readers.mmcv_wheel over it): the planner
    imports none."""
    import ast

    wheel_queries = {"mmcv_wheel", "mmcv_wheel_for", "torchvision_for", "mmcv_alternatives", "pytorch_index"}
    for name in ("plan.py", "plan_build.py"):
        tree = ast.parse((ROOT / "envdoctor" / "fix" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("envdoctor.tables_query"), name
                assert not {a.name for a in node.names} & wheel_queries, (name, node.module)
                assert not (node.module == "envdoctor" and any(a.name == "tables_query" for a in node.names)), name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("envdoctor.tables_query") for a in node.names), name
