"""Distributions in the user site (`pip install --user`; Microsoft Store Python) — issue 12 item 5.

The logic is platform-neutral, so it runs here for real: a pyenv interpreter (not a venv: user site
enabled) with a private PYTHONUSERBASE, a wheel installed there by real `pip install --user`, the real
probe, real pip for the uninstall. Store Python itself (read-only site-packages under WindowsApps)
cannot exist here; its case is the `site_writable=False` input.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envdoctor.facts import Package
from envdoctor.fix import plan as plan_mod
from envdoctor.fix.footprint import roots_for
from envdoctor.fix.pip_runner import Pip
from envdoctor.probe import Target, target_layout
from envdoctor.fix.user_site import placement, where_is
from envdoctor.fix.wheels import build_wheel
from envdoctor.probe import collect
from tests.conftest import need_python


@pytest.fixture
def user_env(tmp_path, monkeypatch):
    python = str(need_python("3.11"))
    monkeypatch.setenv("PYTHONUSERBASE", str(tmp_path / "userbase"))
    monkeypatch.delenv("PYTHONNOUSERSITE", raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    src = tmp_path / "src" / "userpkg"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("VERSION = '1.0'\n")
    whl = build_wheel(tmp_path / "src", "userpkg", "1.0", tmp_path / "wheels")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([python, "-m", "pip", "install", "--user", "--no-index", "--no-deps", str(whl)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python, tmp_path


def _user_site(python: str) -> Path:
    out = subprocess.run([python, "-c", "import site; print(site.getusersitepackages())"], capture_output=True,
                         text=True, check=True).stdout.strip()
    return Path(out)


def test_a_user_site_distribution_is_found_and_removed_there(user_env):
    python, tmp = user_env
    usite = _user_site(python)
    assert usite.is_relative_to(tmp / "userbase") and (usite / "userpkg" / "__init__.py").is_file()
    report = collect(python, quick=True)
    assert report.python.user_site == str(usite) and report.python.user_site_enabled
    pl = placement(report, ["userpkg"])
    assert pl.where == {"userpkg": "user"} and pl.user and pl.refuse is None and str(usite) in (pl.note or "")
    # pip as fixes ran it before (PYTHONNOUSERSITE=1): the distribution is invisible, nothing is removed
    blind = Pip(python).run("uninstall", "-y", "userpkg", isolated=True)
    assert blind.ok and "not installed" in blind.output and (usite / "userpkg").is_dir()
    # with the user site visible, pip removes it from there
    res = Pip(python, user=True).run("uninstall", "-y", "userpkg", isolated=True)
    assert res.ok and "Successfully uninstalled userpkg-1.0" in res.output, res.output
    assert not (usite / "userpkg").exists()


def test_the_backup_covers_the_user_site_when_the_fix_touches_it(user_env):
    python, tmp = user_env
    info = target_layout(Target(python, "--python"))
    usite = os.path.normpath(str(_user_site(python)))
    assert info.user["site"] == usite and info.user["enabled"] is True
    assert usite in roots_for(info, tmp / "state", user=True).recursive
    assert usite not in roots_for(info, tmp / "state").recursive
    assert os.path.normpath(info.user["paths"]["scripts"]) in roots_for(info, tmp / "state", user=True).flat


def test_the_plan_says_where_and_refuses_a_mix_it_cannot_write(user_env):
    python, _tmp = user_env
    report = collect(python, quick=True)
    site = report.python.site_packages[0]
    report.packages["mmcv"] = Package(name="mmcv", version="2.2.0", location=site)
    action = plan_mod.Action(kind="wheel", component="mmcv", title="t", why="w", changes=[], commands=[], undo="",
                             verify=plan_mod.Verify(description="v"), remove=["mmcv", "userpkg"], install=[])
    p = plan_mod.Plan(python=python, prefix=report.python.prefix, strategy="wheel", actions=[action])
    plan_mod._place(report, plan_mod.PlanOptions(site_writable=True), p)
    assert action.applies and action.user_site and any("user site" in n for n in p.notes)
    # Store Python: site-packages read-only, so mmcv there cannot be removed by this user
    action.user_site, p.notes = False, []
    plan_mod._place(report, plan_mod.PlanOptions(site_writable=False), p)
    assert not action.applies and "mmcv is in site-packages, which is not writable" in action.not_applied_because


def test_windows_locations_compare_without_case():
    import ntpath

    usite = r"C:\Users\张三\AppData\Local\Packages\PythonSoftwareFoundation.Python.3.12_qbz5n2kfra8p0" \
            r"\LocalCache\local-packages\Python312\site-packages"
    assert where_is(usite.upper(), usite, [], ntpath) == "user"
    assert where_is(r"C:\Program Files\WindowsApps\Py\Lib\site-packages", usite,
                    [r"C:\Program Files\WindowsApps\Py\lib\site-packages"], ntpath) == "site"
