"""`envdoctor check` end to end, in subprocesses, against real interpreters."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import need_python, run_cli, validate_report


def test_json_report_of_this_interpreter_validates():
    proc = run_cli("check", "--python", sys.executable, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    assert data["schema"] == "envdoctor.report/1"
    assert data["python"]["selected_by"] == "--python"
    assert data["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert data["components"]["torch"]["load"]["status"] in ("ok", "missing")


def test_quick_imports_nothing():
    proc = run_cli("check", "--python", sys.executable, "--quick", "--format", "json")
    data = json.loads(proc.stdout)
    validate_report(data)
    assert data["mode"] == "quick"
    assert all(c["load"]["status"] == "skipped" for c in data["components"].values())


@pytest.mark.parametrize("bad, words", [
    ("/nonexistent/python", "no such file"),
    ("/bin/ls", "is it a working Python interpreter"),
    ("<empty dir>", "no bin/python"),
])
def test_bad_python_is_one_line_exit_2(bad, words, tmp_path):
    proc = run_cli("check", "--python", str(tmp_path) if bad == "<empty dir>" else bad)
    assert proc.returncode == 2
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_python27_gets_a_clear_message():
    exe = need_python("2.7")
    proc = run_cli("check", "--python", str(exe))
    assert proc.returncode == 2
    assert "is Python 2.7" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("minor", ["3.6", "3.7", "3.12", "3.13"])
def test_old_and_new_targets_are_probed(minor):
    exe = need_python(minor)
    proc = run_cli("check", "--python", str(exe), "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    assert data["python"]["version"].startswith(minor + ".")
    assert data["python"]["abi_tag"] == "cp" + minor.replace(".", "")


def test_unknown_rule_for_explain_is_exit_2():
    proc = run_cli("explain", "ED999")
    assert proc.returncode == 2 and "no rule" in proc.stderr


def test_explain_known_rule():
    proc = run_cli("explain", "ED001")
    assert proc.returncode == 0 and "import-fails" in proc.stdout
