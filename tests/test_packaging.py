"""The wheel a user installs: what is inside it, what it requires, and that it runs installed
(not editable) without touching the target's torch.

Offline: the wheel is built with the test venv's hatchling (`pip wheel --no-build-isolation`;
hatchling is in the `test` extra). It is installed with `--no-deps --no-index` into a clone of the
real `torch213` env (torch 2.13.0+cpu). envdoctor's own dependencies (typer, rich, ...) are not in
that env and cannot be downloaded here, so a .pth file appends the test venv's site-packages *after*
the clone's own: `envdoctor` itself is the installed wheel's copy (asserted), its dependencies come
from the test venv.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT, real_env, validate_report


def _need_hatchling() -> None:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("hatchling is missing: it is in the `test` extra (pip install -e '.[test]')")
        pytest.skip("hatchling not installed (pip install -e '.[test]' brings it); building needs no network then")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    _need_hatchling()
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    wheels = list(out.glob("envdoctor-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_rules_probe_scripts_and_compat(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_rules = sorted(p.name for p in (ROOT / "rules").glob("*.toml"))
    assert shipped_rules
    for name in shipped_rules:
        assert f"envdoctor/rules/{name}" in names, name
    for script in sorted((ROOT / "envdoctor" / "probe" / "scripts").glob("*.py")):
        assert f"envdoctor/probe/scripts/{script.name}" in names, script.name
    compat = sorted((ROOT / "envdoctor" / "compat").glob("*.py"))
    assert any(p.name == "ext.py" for p in compat)
    for mod in compat:
        assert f"envdoctor/compat/{mod.name}" in names, mod.name
    assert "envdoctor/report.schema.json" in names  # diff validates what it reads against it
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_wheel_metadata_never_requires_torch(wheel):
    zf = zipfile.ZipFile(wheel)
    meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(zf.read(meta_name))
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("typer") for r in requires), requires  # the field is read correctly
    base = [r.split(";")[0].strip().lower() for r in requires]
    for name in ("torch", "torchvision", "mmcv", "mmcv-full", "mmcv-lite"):
        assert not any(b == name or b.startswith(name + " ") or b.startswith(name + "=") or b.startswith(name + ">")
                       or b.startswith(name + "<") for b in base), (name, requires)
    entry = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "envdoctor = envdoctor.entry:main" in zf.read(entry).decode()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A clone of the torch213 env with the wheel installed (no deps, no index)."""
    from tests.envs import clone_env, python_in, site_packages

    real_env("torch213")
    prefix = clone_env("torch213", tmp_path_factory.mktemp("inst") / "env")
    py = python_in(prefix)
    ours = sysconfig.get_paths()["purelib"]
    probe = subprocess.run([str(py), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, check=True)
    if probe.stdout.strip() != "%d.%d" % sys.version_info[:2]:
        pytest.skip(f"torch213 is Python {probe.stdout.strip()}, the test venv {sys.version_info[:2]}: the test "
                    "venv's compiled dependencies (psutil) cannot serve it")
    return prefix, py, ours, site_packages(prefix)


def _pip_list(py: Path) -> dict[str, str]:
    res = subprocess.run([str(py), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True)
    return {d["name"].lower(): d["version"] for d in json.loads(res.stdout)}


def test_installed_wheel_runs_and_leaves_torch_alone(wheel, installed, tmp_path):
    prefix, py, ours, site = installed
    before = _pip_list(py)
    assert before["torch"] == "2.13.0+cpu"
    res = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    after = _pip_list(py)
    assert after.pop("envdoctor") == "0.1.0"
    assert after == before  # torch (and everything else) untouched

    # envdoctor's deps from the test venv, appended after the env's own site-packages
    (site / "zz_envdoctor_test_deps.pth").write_text(ours + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(py), "-m", "envdoctor", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    where = subprocess.run([str(py), "-c", "import envdoctor; print(envdoctor.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), where  # the wheel's copy, not the checkout

    rules = run("rules")
    assert rules.returncode == 0, rules.stderr
    for name in sorted(p.name for p in (ROOT / "rules").glob("*.toml")):
        assert f"envdoctor/rules/{name}" in rules.stdout.replace(os.sep, "/"), name
    assert str(ROOT) not in rules.stdout

    explain = run("explain", "ED301")
    assert explain.returncode == 0, explain.stderr
    assert "Sources" in explain.stdout and "https://" in explain.stdout

    check = run("check", "--quick", "--format", "json", "--python", str(py))
    assert check.returncode in (0, 1), check.stderr
    report = json.loads(check.stdout)
    validate_report(report)
    assert report["packages"]["torch"]["version"] == "2.13.0+cpu"
    assert _pip_list(py)["torch"] == "2.13.0+cpu"
    # diff reads its schema from the installed package (there is no docs/ beside an installed wheel)
    (tmp_path / "r.json").write_text(check.stdout)
    same = run("diff", str(tmp_path / "r.json"), str(tmp_path / "r.json"))
    assert same.returncode == 0 and "no differences" in same.stdout, same.stderr
