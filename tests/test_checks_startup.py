"""Start-up code that raises (a .pth line, sitecustomize) is reported: real venvs of real interpreters with a
real broken .pth file and a real broken sitecustomize.py. Python prints the error on every run and goes on,
so nothing else would tell the user why their editable install or path hook is missing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, validate_report
from tests.test_probe_target import make_venv, site_packages


def _findings(venv, *args: str) -> tuple[int, dict, list[dict]]:
    proc = run_cli("check", "--python", str(venv), "--format", "json", "--no-redact", *args)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    return proc.returncode, data, [f for f in data["findings"] if f["id"] == "ED503"]


@pytest.mark.parametrize("minor, args", [("3.12", ()), ("3.12", ("--quick",)), ("3.6", ("--quick",))])
def test_broken_pth_line_and_sitecustomize_are_reported(tmp_path, minor, args):
    venv = make_venv(minor, tmp_path / "v")
    sp = site_packages(venv)
    (sp / "broken.pth").write_text("# a comment\n" + str(sp) + "\nimport nothere_envdoctor_test\n")
    (sp / "sitecustomize.py").write_text("raise RuntimeError('broken on purpose')\n")
    code, data, found = _findings(venv, *args)
    assert code == 0  # warnings: the interpreter works, the probe ran
    by_file = {f["evidence"]["file"]: f for f in found}
    assert len(found) == 2, [f["title"] for f in found]  # the venv's lib64 link makes site.py print it twice
    pth = by_file[str(sp / "broken.pth")]
    assert pth["evidence"]["line"] == 3 and pth["evidence"]["code"] == "import nothere_envdoctor_test"
    assert "No module named 'nothere_envdoctor_test'" in pth["title"]
    assert pth["fixes"][0]["commands"] == [f"mv {sp / 'broken.pth'} {sp / 'broken.pth'}.disabled"]
    site = by_file[str(sp / "sitecustomize.py")]
    assert site["evidence"]["module"] == "sitecustomize" and "RuntimeError: broken on purpose" in site["title"]
    assert data["python"]["startup"]["sitecustomize"]["imported"] is False


def test_healthy_start_up_is_silent(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    sp = site_packages(venv)
    (sp / "fine.pth").write_text("import os\n")
    (sp / "sitecustomize.py").write_text("import os\n")
    _, data, found = _findings(venv, "--quick")
    assert found == []
    startup = data["python"]["startup"]
    assert startup["stderr"] == "" and startup["sitecustomize"]["imported"] is True
    assert startup["pth_exec"] == [{"path": str(sp / "fine.pth"), "line": 1, "text": "import os"}]
