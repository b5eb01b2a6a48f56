"""The probe scripts load their helper modules (probe_record.py, installed_dists.py) from their own files.

The scripts directory is never put on the target's sys.path: a module of envdoctor's there would shadow the
target's own module of that name, and a module of the target's with a helper's name must not replace the
helper. Real scripts in real interpreters (this one and the oldest the probe supports, 3.6, when pyenv has it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from envdoctor.probe.target import Target, run_script

HELPERS = ("probe_record", "installed_dists")
PY36 = Path(os.path.expanduser("~/.pyenv/versions/3.6.15/bin/python"))
INTERPRETERS = [sys.executable] + ([str(PY36)] if PY36.is_file() else [])


def _shadows(tmp_path: Path) -> dict[str, str]:
    """A PYTHONPATH directory whose modules have the helpers' names and refuse to be used."""
    site = tmp_path / "shadow"
    site.mkdir()
    for name in HELPERS:
        (site / f"{name}.py").write_text(f"raise SystemExit('the target\\'s own {name} was loaded')\n")
    return {"PYTHONPATH": str(site)}


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_static_probe_uses_its_own_helper_not_a_module_of_the_target(tmp_path, python):
    run = run_script(Target(python, "--python"), "static_facts.py", [], 60, env=_shadows(tmp_path))
    assert run.returncode == 0 and run.data is not None, run.stderr
    assert run.data["python"]["executable"] and "torch" in run.data["components"]
    assert isinstance(run.data["distributions"], dict)


def _module_probe(python: str, module: str, sys_path: Path, env: dict[str, str]) -> dict:
    run = run_script(Target(python, "--python"), "load_probe.py", ["module", module, "60", str(sys_path)], 70,
                     out_is_dir=True, env=env)
    data = run.files.get("module.json")
    assert isinstance(data, dict) and data.get("done"), run.stderr
    return data


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_load_probe_uses_its_own_helper_not_a_module_of_the_target(tmp_path, python):
    (tmp_path / "plainmod.py").write_text("VALUE = 1\n")
    data = _module_probe(python, "plainmod", tmp_path, _shadows(tmp_path))
    assert [(st["name"], st["status"]) for st in data["stages"]] == [("plainmod", "ok")]
    assert data["facts"]["file"] == str(tmp_path / "plainmod.py")


@pytest.mark.parametrize("name", HELPERS)
def test_a_target_module_named_like_a_helper_is_the_targets(tmp_path, name):
    (tmp_path / f"{name}.py").write_text("WHOSE = 'target'\n")
    data = _module_probe(sys.executable, name, tmp_path, {})
    assert [(st["name"], st["status"]) for st in data["stages"]] == [(name, "ok")]
    assert data["facts"]["file"] == str(tmp_path / f"{name}.py")
