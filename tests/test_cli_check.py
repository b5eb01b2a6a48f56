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
    ("/bin/ls", "not a Python interpreter"),
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


# ---------------------------------------------------------------- text output, progress, real envs

ANSI = "\x1b["


def test_text_output_is_plain_when_piped_and_groups_components():
    from tests.conftest import real_env
    from tests.envs import python_in

    proc = run_cli("check", "--python", str(python_in(real_env("torch213-tv291"))))
    assert proc.returncode in (0, 1), proc.stderr
    out = proc.stdout
    assert ANSI not in out and ANSI not in proc.stderr  # not a terminal: no colour, no spinner
    rows = {line.split()[1]: line for line in out.splitlines()[1:10] if line.startswith("  ")}
    assert rows["torch"].lstrip().startswith("✓") and "2.13.0+cpu" in rows["torch"]
    assert rows["torchvision"].lstrip().startswith("✗")
    assert "operator torchvision::nms does not exist" in rows["torchvision"]
    assert "libc10_cuda.so: cannot open shared object file" in rows["torchvision.ops"]
    assert "not installed" in rows["mmcv"]
    assert len(out.splitlines()) < 60  # one screen


def test_progress_goes_to_stderr_only_on_a_terminal():
    """stderr on a pseudo-terminal: the spinner shows the probes; stdout (a pipe) stays plain."""
    import os
    import pty
    import subprocess

    from tests.conftest import ROOT, real_env
    from tests.envs import python_in

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "envdoctor", "check", "--python",
                             str(python_in(real_env("torch213")))],
                            stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode in (0, 1)
    text = seen.decode("utf-8", "replace")
    assert "probing" in text and "torch" in text
    assert b"\x1b[" not in out and b"probing" not in out
    assert b"torch" in out


def test_quick_text_marks_nothing_as_imported():
    proc = run_cli("check", "--quick", "--python", sys.executable)
    assert proc.returncode in (0, 1)
    assert "not probed (--quick)" in proc.stdout
    assert "imports (" not in proc.stdout
