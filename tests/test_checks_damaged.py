"""Damaged packages are findings, not ✓: a real clone of a cached env (torch 2.13 + mmcv-lite 2.2.0) with
torch/__init__.py deleted for real, torch/ made unreadable for real (root: setpriv drops the capability that
lets root read anyway), mmcv/__init__.py deleted. Python then imports an empty namespace package without any
error; envdoctor must say which package is damaged, how to reinstall it, fold what it breaks under it, and not
offer the compat layer (which runs on torch and cannot help).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, real_env, run_cli, validate_report
from tests.test_probe_target import DROP_DAC, _can_drop_dac

REINSTALL_TORCH = "install --force-reinstall --no-deps torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Path:
    from tests import envs

    real_env("mmcv-lite")
    return envs.clone_env("mmcv-lite", tmp_path_factory.mktemp("damaged") / "env")


def _sp(env: Path) -> Path:
    return next(env.glob("lib/python3*/site-packages"))


def _check(env: Path, *args: str, as_user: bool = False) -> tuple[int, dict]:
    cmd = [sys.executable, "-m", "envdoctor", "check", "--python", str(env), "--format", "json", "--no-redact",
           *args]
    if as_user:
        cmd = ["setpriv", *DROP_DAC, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), VIRTUAL_ENV="", CONDA_PREFIX=""))
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    return proc.returncode, data


def _by_id(data: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in data["findings"]:
        out.setdefault(f["id"], []).append(f)
    return out


def _no_compat(data: dict) -> None:
    strategies = [fx.get("strategy") for f in data["findings"] for fx in f["fixes"]]
    commands = [c for f in data["findings"] for fx in f["fixes"] for c in fx["commands"]]
    assert "compat" not in strategies and not any("--strategy compat" in c for c in commands), data["findings"]


def _damaged_torch(data: dict, problem: str) -> dict:
    found = _by_id(data)
    damaged = [f for f in found.get("ED003", []) if f["evidence"]["component"] == "torch"]
    assert damaged, [(f["id"], f["title"]) for f in data["findings"]]
    f = damaged[0]
    assert f["severity"] == "error" and f["explained_by"] is None
    assert problem in f["evidence"]["problems"]
    return f


def test_torch_without_init_py(env):
    init = _sp(env) / "torch" / "__init__.py"
    hidden = init.with_name("__init__.py.moved-by-test")
    init.rename(hidden)
    try:
        code, data = _check(env)
        text = run_cli("check", "--python", str(env), "--no-redact")
        fix = run_cli("fix", "--python", str(env), "--format", "json")
        quick_code, quick = _check(env, "--quick")
    finally:
        hidden.rename(init)
    assert code == 1
    torch = data["components"]["torch"]
    assert torch["load"]["status"] == "import_error" and torch["load"]["cause"] == "damaged_package"
    assert torch["facts"]["damage"]["probe_status"] == "ok"  # Python itself "imported" it
    f = _damaged_torch(data, "no_init")
    assert "torch/__init__.py is missing" in f["title"]
    assert any(REINSTALL_TORCH in c for fx in f["fixes"] for c in fx["commands"]), f["fixes"]
    assert set(f["evidence"]["breaks"]) >= {"mmcv", "mmcv._ext"}
    # what torch breaks is folded under it, and nothing offers the compat layer
    for other in data["findings"]:
        if other is not f and other["component"] in ("torch", "mmcv"):
            assert other["explained_by"] == "ED003", (other["id"], other["title"])
    assert "ED201" not in _by_id(data)
    _no_compat(data)
    # the text says ✗ for torch, never "✓ torch ... imports"
    row = next(line for line in text.stdout.splitlines() if line.strip().split()[1:2] == ["torch"])
    assert row.strip().startswith("✗"), row
    # the plan does not activate the compat layer for it
    assert fix.returncode in (0, 1), fix.stderr
    plan = json.loads(fix.stdout)["fix"]["plan"]
    assert all(a["kind"] != "compat" for a in plan["actions"]), plan["actions"]
    # --quick sees it from the files alone
    assert quick_code == 1
    _damaged_torch(quick, "no_init")


def test_unreadable_torch_directory(env):
    if os.geteuid() == 0 and not _can_drop_dac():
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
    torch_dir = _sp(env) / "torch"
    torch_dir.chmod(0)
    try:
        code, data = _check(env, as_user=os.geteuid() == 0)
    finally:
        torch_dir.chmod(0o755)
    assert code == 1
    f = _damaged_torch(data, "unreadable")
    assert "cannot be read" in f["title"] and "Permission denied" in f["title"]
    # files in a directory that cannot be listed are not "missing": that would send the user looking for them
    assert "record_missing" not in f["evidence"]["problems"]
    commands = [c for fx in f["fixes"] for c in fx["commands"]]
    assert commands[0] == f"chmod -R u+rwX,go+rX {torch_dir}"
    assert any(REINSTALL_TORCH in c for c in commands)
    _no_compat(data)


def test_mmcv_without_init_py(env):
    init = _sp(env) / "mmcv" / "__init__.py"
    hidden = init.with_name("__init__.py.moved-by-test")
    init.rename(hidden)
    try:
        code, data = _check(env)
    finally:
        hidden.rename(init)
    assert code == 1
    damaged = [f for f in _by_id(data).get("ED003", []) if f["evidence"]["component"] == "mmcv"]
    assert damaged and "mmcv/__init__.py is missing" in damaged[0]["title"]
    commands = [c for fx in damaged[0]["fixes"] for c in fx["commands"]]
    assert any("install --force-reinstall --no-deps mmcv-lite==2.2.0" in c for c in commands), commands
    assert data["components"]["torch"]["load"]["status"] == "ok"  # torch itself is fine
    assert not [f for f in data["findings"] if f["component"] == "torch" and f["severity"] == "error"]
    _no_compat(data)


def test_mmcv_whose_version_attribute_is_gone(env):
    """A package that imports but has no __version__ (a half-overwritten install) is damaged too."""
    init = _sp(env) / "mmcv" / "__init__.py"
    original = init.read_text()
    init.write_text(original + "\ndel __version__\n")
    try:
        code, data = _check(env)
    finally:
        init.write_text(original)
    damaged = [f for f in _by_id(data).get("ED003", []) if f["evidence"]["component"] == "mmcv"]
    assert damaged, [(f["id"], f["title"]) for f in data["findings"]]
    assert damaged[0]["evidence"]["problems"] == ["no_version"]
    assert "mmcv.__version__` fails: AttributeError" in damaged[0]["title"]
    assert data["components"]["mmcv"]["load"]["status"] == "import_error"
    _no_compat(data)


def test_a_deleted_pycache_is_not_damage(env):
    """Removing __pycache__ directories is routine clean-up: cached .pyc files listed in RECORD do not count."""
    pycache = _sp(env) / "torch" / "__pycache__"
    moved = pycache.with_name("__pycache__.moved-by-test")
    had = pycache.is_dir()
    if had:
        pycache.rename(moved)
    try:
        code, data = _check(env, "--quick")
    finally:
        if had:
            shutil.rmtree(pycache, ignore_errors=True)
            moved.rename(pycache)
    assert "ED003" not in _by_id(data), _by_id(data).get("ED003")
    assert data["packages"]["torch"]["record_missing"] == 0
