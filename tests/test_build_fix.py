"""`envdoctor fix --strategy build`, the mechanics through the real CLI: a clone of the real torch 2.13
CPU + mmcv-lite 2.2.0 environment, the tiny generated torch extension package of tests/test_build.py as the
source (from a local index as an sdist, or --source DIR), real pip, ninja and gcc, a real SIGINT. The
package is not mmcv, so the verification must fail and the transaction must roll back byte for byte:
that is the point of these tests. The real mmcv build, installed and verified, is tests/test_build_e2e.py.
Plans for GPU machines use recorded reports (tests/data/facts): no GPU here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from envdoctor.build.choice import BuildChoice
from envdoctor.build.spec import decide
from envdoctor.fix.plan import PlanOptions, make_plan
from envdoctor.render.fix import plan_text
from envdoctor.probe.buildhost import BuildHost
from tests.conftest import IN_CI, ROOT, run_cli
from tests.envs import site_packages
from tests.test_fix_recover import light_clone
from tests.test_build import (HOST, SLOW_SPIN, _cmd, _procs_with, _recorded, _wait_for, fetch_requirement_wheels,
                              tiny_package)
from tests.wheelfactory import tree_hash


# ---------------------------------------------------------------- the plan (pure, recorded facts)

@pytest.fixture(scope="module")
def tables():
    from envdoctor.rules import load_tables

    return load_tables()


@pytest.fixture(scope="module")
def requirement_wheels() -> Path:
    return fetch_requirement_wheels()


def _choice(report, tables, host=HOST, cpu=False, cached=None) -> BuildChoice:
    return BuildChoice(decide(report, tables, host, cpu=cpu), "/c", cached=cached)


def test_plan_says_what_is_built_and_why(tables) -> None:
    report = _recorded("real_mmcv-lite.json")
    plan = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables)))
    [a] = plan.actions
    assert a.kind == "build" and a.applies and a.remove == ["mmcv-lite"] and a.install == ["mmcv==2.2.0"]
    assert a.verify.ops == ["nms", "roi_align", "modulated_deform_conv2d"] and "mmcv-lite" in a.verify.absent
    assert a.verify.ops_device == "cpu"  # CPU kernels are verified on the CPU, even where torch sees a GPU
    text = plan_text(plan, applying=False)
    for expected in ("build mmcv 2.2.0 with compiled ops (CPU only) against torch 2.13.0+cpu", "MAX_JOBS=",
                     "time:       about", "setuptools<81, wheel, ninja in a private overlay", "GCC 12.2.0",
                     "--no-build-isolation", "MMCV_WITH_OPS=1", "pip download --no-deps --no-binary=:all:",
                     "log:"):
        assert expected in text, expected
    assert "cached:" not in text and "(cached)" not in text
    cached = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables, cached="/c/w.whl")))
    assert "cached:     installs in seconds" in plan_text(cached, applying=False)


def test_blockers_are_in_the_plan_and_nothing_is_applied(tables) -> None:
    report = _recorded("linux_rtx5090_torch251_cu124.json")  # CUDA torch, no nvcc on that machine
    lite = _recorded("real_mmcv-lite.json")  # + mmcv-lite 2.2.0 as installed in the real test env
    report.packages["mmcv-lite"] = lite.packages["mmcv-lite"]
    report.components.update({k: lite.components[k] for k in ("mmcv", "mmcv._ext")})
    plan = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables)))
    [a] = plan.actions
    assert not a.applies and not plan.runnable and "install the CUDA 12.4 toolkit" in a.not_applied_because
    text = plan_text(plan, applying=False)
    assert "✗ cannot build: no nvcc found" in text and "--cpu" in text
    assert a.verify.ops_device == "auto"  # a CUDA build is verified on the GPU when there is one
    no_cxx = BuildHost(**{**HOST.__dict__, "cxx": None, "cxx_version": None})
    plan = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables, no_cxx, cpu=True)))
    assert not plan.runnable and "apt install g++" in plan.actions[0].not_applied_because


def test_windows_without_msvc_is_a_blocker(tables) -> None:
    """The seed case (Windows, torch 2.5.1+cu124, mmcv-full 1.7.2; recorded report): the plan says MSVC is
    missing before any build starts. (Finding MSVC with vswhere itself cannot run here: no Windows.)"""
    report = _recorded("seed_windows_py312_torch251_mmcvfull172.json")
    no_msvc = BuildHost(cores=8, mem_available_mib=None, disk_free_mib=100000, cxx=None, cxx_version=None)
    plan = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables, no_msvc, cpu=True)))
    [a] = plan.actions
    assert a.install == ["mmcv-full==1.7.2"] and not a.applies
    assert "MSVC is missing" in a.not_applied_because and "Desktop development with C++" in a.not_applied_because
    assert "apt install" not in a.not_applied_because
    msvc = BuildHost(**{**no_msvc.__dict__, "cxx": "C:/VS/BuildTools", "cxx_version": "MSVC",
                        "msvc": "C:/VS/BuildTools"})
    ok = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables, msvc, cpu=True)))
    assert "MSVC" not in ok.actions[0].not_applied_because


def test_auto_never_builds_but_names_the_option(tables) -> None:
    report = _recorded("real_mmcv-lite.json")
    plan = make_plan(report, tables, PlanOptions())
    assert [a.kind for a in plan.actions] == ["compat"]
    assert any("--strategy build" in n and "auto never starts it" in n for n in plan.notes)


def test_compat_layer_steps_aside_for_the_build(tables) -> None:
    """With the compat layer serving mmcv._ext, `build` still has work: it removes the layer in the same
    transaction (auto / compat see nothing to do there)."""
    from envdoctor.facts import Package

    report = _recorded("real_mmcv-lite.json")
    ext = report.components["mmcv._ext"]
    ext.load.status, ext.load.error = "ok", None
    ext.facts["ext_file"] = "/env/site-packages/_envdoctor_compat/ext.py"
    report.packages["envdoctor-compat"] = Package(name="envdoctor-compat", version="0.1.0")
    assert not make_plan(report, tables, PlanOptions()).problems
    plan = make_plan(report, tables, PlanOptions(strategy="build", build=_choice(report, tables)))
    [a] = plan.actions
    assert plan.problems[0].status == "compat" and a.remove == ["mmcv-lite", "envdoctor-compat"]
    assert "envdoctor-compat" in a.verify.absent and "compat layer steps aside" in plan_text(plan, False)


# ---------------------------------------------------------------- the CLI on a real environment

@pytest.fixture(scope="module")
def lite_env(tmp_path_factory) -> Path:
    """One clone of the real mmcv-lite env for this module: every test must leave it as it found it."""
    return light_clone("mmcv-lite", tmp_path_factory.mktemp("env") / "lite")


def _needs_disk(mib: int) -> None:
    """The plan refuses a build of unknown size with less free disk than a full mmcv build needs (a real
    blocker, right to apply); this shared machine is sometimes that full."""
    free = shutil.disk_usage(tempfile.gettempdir()).free >> 20
    if free < mib:
        msg = f"only {free} MiB free in {tempfile.gettempdir()}: a build of unknown size is (rightly) blocked"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _site_hash(env: Path) -> str:
    return tree_hash(site_packages(env))


def _mmcv_sdist(tmp_path: Path, requirement_wheels: Path, **kw) -> Path:
    """A local index: the build requirements' wheels and the tiny package as `mmcv-2.2.0.tar.gz`."""
    pkg = tiny_package(tmp_path, **kw)
    setup = (pkg / "setup.py").read_text().replace('name="tinyext", version="0.1"', 'name="mmcv", version="2.2.0"')
    (pkg / "setup.py").write_text(setup)
    index = tmp_path / "index"
    shutil.copytree(requirement_wheels, index)
    with tarfile.open(index / "mmcv-2.2.0.tar.gz", "w:gz") as t:
        t.add(pkg, arcname="mmcv-2.2.0")
    return index


def test_cli_options(lite_env: Path, tmp_path: Path) -> None:
    bad = run_cli("fix", "--python", str(lite_env), "--cpu")
    assert bad.returncode == 2 and "--cpu belongs to --strategy build" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("fix", "--python", str(lite_env), "--strategy", "build", "--source", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr and len(bad.stderr.splitlines()) == 1
    # a real blocker: no C++ compiler on PATH. The plan says what to install; exit 1, dry run or not; nothing changed
    before = _site_hash(lite_env)
    no_cxx = {"PATH": str(tmp_path / "empty-bin"), "ENVDOCTOR_BUILD_CACHE": str(tmp_path / "cache")}
    for extra in ((), ("--apply", "--yes")):
        res = run_cli("fix", "--python", str(lite_env), "--strategy", "build", "--cpu", *extra, env=no_cxx)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "✗ cannot build: no C++ compiler (c++/g++) on PATH: install one" in res.stdout
        assert "[not applied: " in res.stdout and "Traceback" not in res.stderr
    assert "Nothing applied" in res.stdout and _site_hash(lite_env) == before


def test_dry_run_with_a_cold_cache_changes_nothing(lite_env: Path, tmp_path: Path) -> None:
    _needs_disk(2100)
    before = _site_hash(lite_env)
    res = run_cli("fix", "--python", str(lite_env), "--strategy", "build", "--cpu",
                  env={"ENVDOCTOR_BUILD_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[build] build mmcv==2.2.0 with compiled ops (CPU kernels)" in res.stdout and "(cached)" not in res.stdout
    assert "Dry run: nothing was changed" in res.stdout
    assert _site_hash(lite_env) == before and not (tmp_path / "cache").exists()


def test_index_sdist_is_built_installed_verified_and_rolled_back(lite_env: Path, tmp_path: Path,
                                                                requirement_wheels: Path) -> None:
    """The whole pipe with a real build: sdist from a (local) index, overlay, [n/N] progress, the wheel into
    envdoctor's cache, install through the transaction; the package is not mmcv, so the ops verification fails
    and everything is rolled back."""
    _needs_disk(2100)
    index = _mmcv_sdist(tmp_path, requirement_wheels)
    before = _site_hash(lite_env)
    cache_root = tmp_path / "cache"
    res = run_cli("fix", "--python", str(lite_env), "--strategy", "build", "--cpu", "--index-url", str(index),
                  "--apply", "--yes", env={"ENVDOCTOR_BUILD_CACHE": str(cache_root)}, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "[1/3]" in out and "[3/3] 100%" in out and "✓ built in" in out
    assert "pip install mmcv-2.2.0-cp311-cp311-linux_x86_64.whl" in out
    assert "the fresh probe does not confirm the fix" in out and "Result: rolled_back" in out, out[-4000:]
    assert "`import mmcv._ext` (compat layer off): ModuleNotFoundError" in out, out[-4000:]
    assert _site_hash(lite_env) == before
    [entry] = (cache_root / "mmcv-2.2.0").iterdir()  # the build is cached (keyed by this torch)
    assert (entry / "mmcv-2.2.0-cp311-cp311-linux_x86_64.whl").is_file()
    assert "[3/3]" in (entry / "build.log").read_text()
    check = run_cli("check", "--python", str(lite_env), "--format", "json")
    assert "ED601" not in check.stdout


def test_a_failed_build_is_a_finding_and_changes_nothing(lite_env: Path, tmp_path: Path,
                                                         requirement_wheels: Path) -> None:
    pkg = tiny_package(tmp_path, extra_source="#error envdoctor-injected-compile-error")
    before = _site_hash(lite_env)
    res = run_cli("fix", "--python", str(lite_env), "--strategy", "build", "--cpu", "--source", str(pkg),
                  "--index-url", str(requirement_wheels), "--apply", "--yes",
                  env={"ENVDOCTOR_BUILD_CACHE": str(tmp_path / "cache")}, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "the build did not produce a wheel; nothing was installed" in out
    assert "error: #error envdoctor-injected-compile-error" in out and "ED800" in out
    assert not re.search(r"^  pip (un)?install", out, re.M)  # the transaction stopped before pip ran
    assert _site_hash(lite_env) == before
    [kept] = (tmp_path / "cache" / "failed").glob("*.log")
    assert f"log: {kept}" in out and not (pkg / "build").exists()  # the log it names is the one kept


def test_ctrl_c_stops_the_build_and_changes_nothing(lite_env: Path, tmp_path: Path,
                                                    requirement_wheels: Path) -> None:
    pkg = tiny_package(tmp_path, spin=SLOW_SPIN)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before = _site_hash(lite_env)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "ENVDOCTOR_BUILD_CACHE": str(tmp_path / "c")}
    proc = subprocess.Popen([sys.executable, "-m", "envdoctor", "fix", "--python", str(lite_env), "--strategy",
                             "build", "--cpu", "--source", str(pkg), "--index-url", str(requirement_wheels),
                             "--apply", "--yes"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(b"cc1plus" in _cmd(p) and b"slow.cpp" in _cmd(p) for p in _procs_with(str(tmp))),
              timeout=600)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted" in out + err
    _wait_for(lambda: not _procs_with(str(tmp)), timeout=10)  # no compiler job outlives it
    assert _site_hash(lite_env) == before
    assert not list((tmp_path / "c").glob("mmcv-2.2.0/*/*.whl"))
    check = run_cli("check", "--python", str(lite_env), "--format", "json")
    assert "ED601" not in check.stdout  # the transaction was closed, not left half-done

