"""`envdoctor fix --strategy build` end to end with the real mmcv 2.2.0 (CPU ops) against the real torch 2.13 CPU:
a clone of the cached torch 2.13 + mmcv-lite 2.2.0 environment, first repaired with the compat layer, then
`fix --strategy build --cpu --apply` installs the real build from envdoctor's cache (tests/mmcv_build.py built
it there when the cache was cold) → the compat layer steps aside in the same transaction, `check` says the
compiled `_ext` loads, nms / roi_align / modulated deformable convolution ran with it → `fix --undo` puts the
compat-layer state back byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.envs import site_packages
from tests.mmcv_build import ENV, ensure
from tests.test_fix_recover import light_clone
from tests.wheelfactory import tree_hash

pytestmark = pytest.mark.after_mmcv_build


def _py(env: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "python"), "-B", "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENVDOCTOR_COMPAT")})


def test_build_strategy_installs_verifies_and_undoes(tmp_path: Path) -> None:
    wheel, how, seconds = ensure()
    print(f"mmcv wheel {how} in {seconds:.0f} s: {wheel}")
    cache_env = {"ENVDOCTOR_BUILD_CACHE": str(wheel.parent.parent.parent)}
    env = light_clone(ENV, tmp_path / "e2fgvi")
    site = site_packages(env)

    compat = run_cli("fix", "--python", str(env), "--strategy", "compat", "--apply", "--yes", timeout=600)
    assert compat.returncode == 0, compat.stdout + compat.stderr
    check = run_cli("check", "--python", str(env), timeout=600)
    assert "mmcv._ext" in check.stdout and "served by envdoctor's compat layer" in check.stdout, check.stdout
    with_compat = tree_hash(site)

    plan = run_cli("fix", "--python", str(env), "--strategy", "build", "--cpu", env=cache_env, timeout=600)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "cached:     installs in seconds" in plan.stdout and "served by envdoctor's compat layer" in plan.stdout
    assert "removes envdoctor-compat" in plan.stdout and tree_hash(site) == with_compat

    res = run_cli("fix", "--python", str(env), "--strategy", "build", "--cpu", "--apply", "--yes", env=cache_env,
                  timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "pip uninstall -y envdoctor-compat" in out and "Result: verified" in out
    assert "nms, roi_align, modulated_deform_conv2d ran on cpu" in out
    assert "_ext.cpython-311-x86_64-linux-gnu.so" in out

    check = run_cli("check", "--python", str(env), timeout=600)
    assert check.returncode == 0, check.stdout
    line = next(ln for ln in check.stdout.splitlines() if "mmcv._ext" in ln)
    assert "(compiled _ext.cpython-311-x86_64-linux-gnu.so)" in line and "imports" in line, line
    assert not (site / "_envdoctor_compat").exists() and not list(site.glob("mmcv_lite-*.dist-info"))
    # the real kernels, in a plain user process: mmcv's own DeformConv2dPack runs through the compiled _ext
    run = _py(env, "import torch, mmcv._ext as e; from mmcv.ops import ModulatedDeformConv2dPack as M; "
                   "m = M(4, 3, 3, padding=1); "
                   "print(e.__file__.endswith('.so'), tuple(m(torch.randn(1, 4, 5, 5)).shape))")
    assert run.stdout.split() == ["True", "(1,", "3,", "5,", "5)"], run.stderr

    undo = run_cli("fix", "--python", str(env), "--undo", timeout=600)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert tree_hash(site) == with_compat
    again = run_cli("check", "--python", str(env), timeout=600)
    assert "served by envdoctor's compat layer" in again.stdout, again.stdout
