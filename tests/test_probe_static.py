"""Static facts (no heavy import): distributions, RECORD, version.py, several copies on sys.path."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from envdoctor.probe import collect
from tests.conftest import need_python, real_env
from tests.envs import python_in, site_packages


def conda_like_prefix(base_python: Path, dest: Path) -> Path:
    """A non-venv prefix install of `base_python` (as conda envs are): its own bin/python and
    lib/python3.X/site-packages, the standard library borrowed by symlinks, a conda-meta/ dir.
    Unlike a venv, such an interpreter puts the user site *before* its own site-packages."""
    base = base_python.resolve().parent.parent
    minor = "python%d.%d" % tuple(int(x) for x in subprocess.run(
        [str(base_python), "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True, text=True, check=True).stdout.split())
    (dest / "bin").mkdir(parents=True)
    (dest / "conda-meta").mkdir()
    lib = dest / "lib" / minor
    (lib / "site-packages").mkdir(parents=True)
    for entry in (base / "lib" / minor).iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    shutil.copy2(base_python.resolve(), dest / "bin" / "python")
    return dest


@pytest.fixture
def shadowed_torch(tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """A conda-like env holding torch 2.14.1, and a user site holding torch 2.13.0+cpu:
    the classic `pip install --user` copy that wins the import."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the test runner has no torch to use as the environment's copy")
    runner_sp = Path(list(spec.submodule_search_locations)[0]).parent
    prefix = conda_like_prefix(need_python("3.11"), tmp_path / "conda-env")
    env_sp = prefix / "lib" / "python3.11" / "site-packages"
    (env_sp / "torch").symlink_to(runner_sp / "torch")
    for info in runner_sp.glob("torch-*.dist-info"):
        (env_sp / info.name).symlink_to(info)
    userbase = tmp_path / "userbase"
    user_sp = userbase / "lib" / "python3.11" / "site-packages"
    user_sp.parent.mkdir(parents=True)
    user_sp.symlink_to(site_packages(real_env("torch213")))  # torch 2.13 with all its dependencies
    monkeypatch.setenv("PYTHONUSERBASE", str(userbase))
    monkeypatch.delenv("PYTHONNOUSERSITE", raising=False)
    return prefix, env_sp, user_sp


def test_user_site_copy_shadowing_the_env_is_visible(shadowed_torch):
    venv, env_sp, user_sp = shadowed_torch
    import torch as runner_torch

    report = collect(str(venv), timeout=90)
    assert report.python.conda_prefix == str(venv) and report.python.is_venv is False
    assert report.python.user_site_enabled is True and report.python.user_site == str(user_sp)
    comp = report.components["torch"]
    dirs = comp.facts["package_dirs"]
    # both copies, in import order: the user site first
    assert [d["path"] for d in dirs] == [str(user_sp / "torch"), str(env_sp / "torch")]
    assert [d["version"] for d in dirs] == ["2.13.0+cpu", runner_torch.__version__]
    pkg = report.packages["torch"]
    assert pkg.version == "2.13.0+cpu" and pkg.location == str(user_sp)
    assert pkg.shadowed_locations == [str(env_sp)]
    # what is imported is the user-site copy
    rt = comp.facts["runtime"]
    assert comp.load.status == "ok"
    assert rt["version"] == "2.13.0+cpu" and rt["file"].startswith(str(user_sp))
    # and the diagnosis sees the shadowing in these real facts (not only in recorded ones)
    from envdoctor.rules import load_tables
    from tests.diagnosed import findings_of

    shadow = [f for f in findings_of(report, load_tables()) if f.id == "ED203"]
    assert shadow and shadow[0].evidence["package_dirs"] == [str(user_sp / "torch"), str(env_sp / "torch")]


def test_record_compiled_files_present_and_missing(tmp_path):
    """Delete one compiled file that RECORD lists: the static facts count it as missing."""
    # torchvision's files alone (a few MB), copied from a real install
    src = site_packages(real_env("torch213-tv291"))
    venv = tmp_path / "v"
    subprocess.run([str(need_python("3.11")), "-m", "venv", "--without-pip", str(venv)], check=True)
    sp = site_packages(venv)
    shutil.copytree(src / "torchvision", sp / "torchvision", symlinks=True)
    shutil.copytree(src / "torchvision.libs", sp / "torchvision.libs", symlinks=True)
    for info in src.glob("torchvision-*.dist-info"):
        shutil.copytree(info, sp / info.name)
    report = collect(str(venv), quick=True)
    pkg = report.packages["torchvision"]
    assert pkg.compiled_files >= 2 and pkg.compiled_missing == []
    (sp / "torchvision" / "_C_stable.so").unlink()
    report = collect(str(venv), quick=True)
    pkg = report.packages["torchvision"]
    assert "torchvision/_C_stable.so" in pkg.compiled_missing
    owner = report.components["torchvision"].facts["owners"][0]
    assert owner["ext_in_record"] == [{"path": "torchvision/_C_stable.so", "exists": False}]
    assert report.components["torchvision"].facts["ext_files"] == []


def test_torch_version_py_is_parsed_not_imported():
    report = collect(str(python_in(real_env("torch213"))), quick=True)
    torch = report.components["torch"]
    assert torch.facts["version_py"]["__version__"] == "2.13.0+cpu"
    assert torch.facts["version_py"]["cuda"] is None
    assert torch.facts["version_py"]["git_version"] == "cf30153c4c131c8164ee7798e5022d810682e2cb"
    assert torch.load.status == "skipped" and torch.load.note == "not tried: --quick"
    pkg = report.packages["torch"]
    assert pkg.installer == "pip" and pkg.requested is True and pkg.direct_url is None
    assert pkg.wheel_tags == ["cp311-cp311-manylinux_2_28_x86_64"]
    assert pkg.compiled_files > 10 and pkg.compiled_missing == []


def test_direct_url_of_a_local_wheel(tmp_path):
    """pip records where a package came from (a local file here): direct_url.json is in the facts."""
    whl = tmp_path / "localpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("localpkg/__init__.py", "")
        z.writestr("localpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: localpkg\nVersion: 1.0\n")
        z.writestr("localpkg-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("localpkg-1.0.dist-info/top_level.txt", "localpkg\n")
        z.writestr("localpkg-1.0.dist-info/RECORD", "localpkg/__init__.py,,\nlocalpkg-1.0.dist-info/METADATA,,\n"
                   "localpkg-1.0.dist-info/WHEEL,,\nlocalpkg-1.0.dist-info/top_level.txt,,\n"
                   "localpkg-1.0.dist-info/RECORD,,\n")
    venv = tmp_path / "v"
    subprocess.run([str(need_python("3.11")), "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(whl)], check=True, capture_output=True)
    report = collect(str(venv), quick=True)
    pkg = report.packages["localpkg"]
    assert pkg.direct_url is not None and pkg.direct_url["url"] == whl.as_uri()
    assert pkg.installer == "pip" and pkg.version == "1.0" and pkg.requested is True
    assert pkg.wheel_tags == ["py3-none-any"] and pkg.wheel_generator == "hand" and pkg.top_level == ["localpkg"]
