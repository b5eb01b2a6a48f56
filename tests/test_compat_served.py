"""`check` and `fix` say what the compat layer serves: N of the M kernels of this mmcv's _ext (ED410, the
mmcv._ext row, the JSON), and, before applying, whether it covers the op families of the installed
OpenMMLab packages (rules/mmcv_ops.toml). On a real torch 2.13 + mmcv-lite 2.2.0 environment with the real
compat layer; the one consumer is a metadata-only `mmdet3d` distribution (mmdet3d itself needs a network
install and compiled ops: only its name and version matter to the plan and the check)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from envdoctor import op_coverage
from envdoctor.fix.wheels import build_wheel
from envdoctor.rules import load_tables
from tests.conftest import real_env, run_cli, validate_report
from tests.envs import clone_env, python_in, site_packages

TABLES = load_tables()
KERNELS_22 = next(r["kernels"] for r in TABLES.rows("mmcv_ext_names") if r["mmcv"].startswith(">=2"))


def _served_now() -> list[str]:
    from envdoctor.compat import ext

    return sorted(ext.IMPLEMENTED)


@pytest.fixture(scope="module")
def lite_with_mmdet3d(tmp_path_factory) -> Path:
    """A clone of the real mmcv-lite env with a metadata-only mmdet3d 1.4.0 installed by real pip."""
    real_env("mmcv-lite")  # built (or skipped) like every cached env
    tmp = tmp_path_factory.mktemp("served")
    env = clone_env("mmcv-lite", tmp / "env")
    staging = tmp / "staging" / "mmdet3d"
    staging.mkdir(parents=True)
    (staging / "__init__.py").write_text("__version__ = '1.4.0'\n")
    whl = build_wheel(staging.parent, "mmdet3d", "1.4.0", tmp / "wheels")
    subprocess.run([str(python_in(env)), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)],
                   check=True, capture_output=True)
    return env


def test_the_plan_says_before_applying_which_consumers_compat_covers(lite_with_mmdet3d):
    env = lite_with_mmdet3d
    proc = run_cli("fix", "--python", str(python_in(env)), "--strategy", "compat", timeout=600)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    out = proc.stdout
    assert "[compat]" in out and "Dry run" in out
    served = len(set(_served_now()) & set(KERNELS_22))
    assert f"mmcv 2.2.0's _ext: served by envdoctor's compat layer ({served} of {len(KERNELS_22)} kernels" in out
    line = next(x for x in out.splitlines() if "mmdet3d 1.4.0" in x)
    assert "NOT covered" in line and "sparse convolution" in line and "build strategy" in line
    assert not (site_packages(env) / "_envdoctor_compat").exists()  # a dry run changed nothing


def _check(env: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("check", "--python", str(python_in(env)), *args, timeout=600)


def test_check_says_the_ext_is_served_and_how_much_read_from_the_layer_itself(lite_with_mmdet3d):
    from envdoctor.compat import hook

    env = lite_with_mmdet3d
    site = site_packages(env)
    hook.enable(str(site))
    try:
        proc = _check(env, "--format", "json")
        report = json.loads(proc.stdout)
        validate_report(report)
        # the only error: mmdet3d's own mmcv range (ED404); the served _ext itself is no problem
        errors = [(x["id"], x["title"]) for x in report["findings"] if x["severity"] == "error"]
        assert all(i == "ED404" and "mmdet3d" in t for i, t in errors), errors
        assert proc.returncode == (1 if errors else 0), proc.stderr
        facts = report["components"]["mmcv._ext"]["facts"]
        assert facts["compat"]["served"] == _served_now()
        (f,) = [x for x in report["findings"] if x["id"] == "ED410"]
        assert f["severity"] == "info"
        ev = f["evidence"]
        assert ev["kernels_total"] == len(KERNELS_22) == 110
        assert ev["served"] == [k for k in KERNELS_22 if k in set(_served_now())]
        assert ev["kernels_served"] == len(ev["served"]) and set(ev["missing"]) == set(KERNELS_22) - set(ev["served"])
        assert "spconv" in ev["consumers"]["mmdet3d"]["not_covered"]
        assert f["title"].startswith(f"mmcv._ext is served by envdoctor's compat layer ({len(ev['served'])} of 110 "
                                     "kernels; missing: ")

        # a kernel added to the layer counts without any table change: serve one more name in the copy
        ext_py = site / "_envdoctor_compat" / "ext.py"
        extra = ev["missing"][0]
        ext_py.write_text(ext_py.read_text() + f"\n\ndef {extra}(*a, **k):\n    return None\n\n"
                          f"IMPLEMENTED = IMPLEMENTED + ({extra!r},)\n")
        text = _check(env)
        assert text.returncode == proc.returncode, text.stderr
        row = next(x for x in text.stdout.splitlines() if re.match(r"^\s*\S+\s+mmcv\._ext\b", x))
        assert f"served by envdoctor's compat layer ({len(ev['served']) + 1} of 110 kernels; missing:" in row, row
        assert "imports (" not in row
        assert "ED410" in text.stdout and "no problems found" not in text.stdout
    finally:
        hook.disable(str(site))


def test_bundled_served_is_what_the_layer_exports():
    """The plan reads the layer's own export list (no torch in envdoctor's process): it must be the real one."""
    from envdoctor.compat import ext

    bundled = op_coverage.bundled_served()
    assert bundled is not None
    assert set(ext.IMPLEMENTED) <= set(bundled)
    assert set(bundled) - set(ext.IMPLEMENTED) <= {"CompatOpUnavailableError", "MMCV_EXT_NAMES", "IMPLEMENTED"}


def test_a_family_is_covered_only_when_every_kernel_of_it_is_served():
    served = set(_served_now())
    spconv = next(r["kernels"] for r in TABLES.rows("mmcv_op_family") if r["family"] == "spconv")
    (before,) = op_coverage.consumer_coverage(TABLES, {"mmdet3d": "1.4.0"}, served)
    assert "spconv" in [u["family"] for u in before.uncovered]
    (partial,) = op_coverage.consumer_coverage(TABLES, {"mmdet3d": "1.4.0"}, served | set(spconv[:-1]))
    assert "spconv" not in partial.covered
    (after,) = op_coverage.consumer_coverage(TABLES, {"mmdet3d": "1.4.0"}, served | set(spconv))
    assert "spconv" in after.covered


def test_every_family_kernel_and_consumer_row_names_real_ext_kernels():
    all_kernels = {k for r in TABLES.rows("mmcv_ext_names") for k in r["kernels"]}
    families = {r["family"] for r in TABLES.rows("mmcv_op_family")}
    for r in TABLES.rows("mmcv_op_family"):
        assert set(r["kernels"]) <= all_kernels, r["family"]
    for r in TABLES.rows("mmcv_consumer_ops"):
        assert r["family"] in families, r
        if "configs" in r:
            assert 0 < r["configs"] <= r["of"], r


def test_the_compat_action_carries_its_coverage_through_the_journal_and_the_text():
    from envdoctor.fix.plan import Plan, PlanOptions, make_plan
    from envdoctor.render.fix import plan_text
    from tests.test_fix_plan import report

    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu", "mmdet": "3.3.0", "mmyolo": "0.6.0"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""),
                "mmcv._ext": (False, "missing", "No module named 'mmcv._ext'")})
    r.components["mmcv"].version = "2.2.0"
    plan = make_plan(r, TABLES, PlanOptions(strategy="compat"))
    (action,) = [a for a in plan.actions if a.kind == "compat"]
    served = len(set(_served_now()) & set(KERNELS_22))
    assert action.coverage[0].startswith(f"mmcv 2.2.0's _ext: served by envdoctor's compat layer ({served} of 110")
    mmdet = next(x for x in action.coverage if x.startswith("mmdet 3.3.0"))
    assert "NOT covered: CARAFE upsampling (2 of 801 configs)" in mmdet and "roi_align" in mmdet.split("covered:")[-1]
    assert any(x.startswith("mmyolo 0.6.0: covered") for x in action.coverage)
    assert Plan.from_dict(plan.to_dict()).actions[0].coverage == action.coverage
    text = plan_text(plan, applying=False)
    assert "covers:" in text and "MMSyncBN" in text
