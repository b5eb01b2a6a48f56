"""The load probe on Windows terms (issue 12 items 2 and 13), with the real script in a real interpreter.

Item 2: on Windows `os.replace` fails (WinError 5) while the parent holds the result file open to read
it. Here a sitecustomize makes the real os.replace of the probe process fail the way Windows does (a
PermissionError), some of the time or all of the time; the probe must still report the import, not die.
Item 13: a Ctrl-C that reaches a probe despite its ignored SIGINT (an imported module set its own
handler) is not recorded as the import's result."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from envdoctor.probe import loads
from envdoctor.probe.target import RunningScript, Target

FLAKY = """
import os
_real = os.replace
_calls = [0]
def _replace(src, dst, *a, **k):
    _calls[0] += 1
    if {fail}:
        raise PermissionError(13, "Access is denied")  # what WinError 5 is in Python
    return _real(src, dst, *a, **k)
os.replace = _replace
"""


def _probe(tmp_path: Path, module: str, fail: str = "") -> loads.LoadResult:
    env = {}
    if fail:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(FLAKY.format(fail=fail))
        env["PYTHONPATH"] = str(site)
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py", ["module", module, "30", str(tmp_path)],
                        40, out_is_dir=True, env=env)
    finished = run.wait()
    outcome = loads._outcome("module", finished.files.get("module.json"), finished)
    assert (finished.files.get("module.json") or {}).get("done"), finished.stderr
    return loads.stage_results(outcome)[module]


@pytest.mark.parametrize("fail", [
    "_calls[0] % 4 != 0",  # three of four tries refused: the retry gets through
    "True",  # never replaceable: written in place
])
def test_a_refused_replace_does_not_make_the_import_a_crash(tmp_path, fail):
    (tmp_path / "plainmod.py").write_text("VALUE = 1\n")
    res = _probe(tmp_path, "plainmod", fail)
    assert res.status == "ok", res
    assert not list(tmp_path.glob("**/*.tmp"))


def test_an_import_error_is_still_reported_when_replace_is_refused(tmp_path):
    (tmp_path / "badmod.py").write_text("raise ImportError('DLL load failed while importing _ext: x')\n")
    res = _probe(tmp_path, "badmod", "_calls[0] % 2 == 1")
    assert res.status == "import_error" and "DLL load failed" in res.error.message


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to one process")
def test_a_ctrl_c_inside_an_import_is_not_an_import_error(tmp_path):
    (tmp_path / "handlermod.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "open(__file__ + '.started', 'w').close()\ntime.sleep(5)\n")
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py",
                        ["module", "handlermod", "30", str(tmp_path)], 40, out_is_dir=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "handlermod.py.started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(run.proc.pid, signal.SIGINT)
    finished = run.wait()
    outcome = loads._outcome("module", finished.files.get("module.json"), finished)
    res = loads.stage_results(outcome)["handlermod"]
    assert res.status == "error" and res.error.type == "Interrupted", res
    assert "KeyboardInterrupt" not in (res.error.message or "")
