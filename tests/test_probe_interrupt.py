"""Ctrl-C during `envdoctor check`: a real SIGINT to a real check of a real environment, at several moments.

Afterwards no temporary probe directory of that run may remain (they hold unredacted paths and output) and
no process it started may still run. Each run gets its own TMPDIR and a marker in its environment, which
every probe process inherits: /proc tells which processes carry it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, real_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find processes")


def _marked(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds the marker."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z":
            found.append(int(entry))
    return found


def _first_probe_dir(tmp: Path, proc: subprocess.Popen, limit: float = 60.0) -> bool:
    """Wait until the check has created its first probe directory (the probes are starting)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if any(tmp.iterdir()):
            return True
        time.sleep(0.002)
    return False


def _interrupt_once(prefix: Path, tmp: Path, delay: float, after_probe_start: bool) -> tuple[int, str, list[int]]:
    marker = f"ENVDOCTOR_TEST_MARK={uuid.uuid4().hex}"
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT), VIRTUAL_ENV="", CONDA_PREFIX="")
    env.pop("ENVDOCTOR_DEBUG", None)
    key, value = marker.split("=", 1)
    env[key] = value
    out = tmp.parent / f"{tmp.name}.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "envdoctor", "check", "--python", str(prefix)],
                                stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    if after_probe_start:
        _first_probe_dir(tmp, proc)
    time.sleep(delay)
    interrupted = proc.poll() is None
    if interrupted:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # envdoctor has exited; whatever it started must be gone too (a killed process may take a moment to die)
    end = time.monotonic() + 3.0
    alive = _marked(value)
    while alive and time.monotonic() < end:
        time.sleep(0.05)
        alive = _marked(value)
    for pid in alive:  # never leave them running for the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if interrupted and proc.returncode in (0, 1) and "interrupted" not in err.decode(errors="replace"):
        # The signal came after the check had written its whole report (it ignores a Ctrl-C that can no
        # longer stop anything): that is a finished run, which must have printed a complete report.
        last = (out.read_text(errors="replace").rstrip().splitlines() or [""])[-1]
        assert "error(s)" in last, f"exit {proc.returncode} without the report's summary line: {last!r}"
        return -999, err.decode(errors="replace"), alive
    return (proc.returncode if interrupted else -999), err.decode(errors="replace"), alive


def test_ctrl_c_at_any_moment_leaves_no_probe_dir_and_no_process(tmp_path):
    prefix = real_env("mmcv-lite")  # torch + mmcv: the forked load probe has children to leave behind
    moments = [(0.0, True), (0.02, True), (0.1, True), (0.3, True), (0.6, True), (1.0, True), (1.5, True),
               (2.2, True)]
    interrupted = 0
    for i, (delay, after_start) in enumerate(moments):
        tmp = tmp_path / f"run{i}"
        tmp.mkdir()
        rc, err, alive = _interrupt_once(prefix, tmp, delay, after_start)
        left = sorted(p.name for p in tmp.iterdir())
        assert not alive, f"SIGINT {delay} s after the probes started: processes still running: {alive}"
        assert left == [], f"SIGINT {delay} s after the probes started: left in TMPDIR: {left}"
        if rc != -999:
            interrupted += 1
            assert rc == 130, (delay, rc, err)
            assert "Traceback" not in err and "interrupted" in err, err
    assert interrupted >= len(moments) // 2, "the check finished before most signals: nothing was tested"


def test_a_ctrl_c_that_reaches_the_probe_is_not_an_import_result(tmp_path):
    """On Windows a console Ctrl-C reaches every process on the console, the probes too. A probe must not
    record it as the import's outcome ("import_error: KeyboardInterrupt"): only envdoctor ends a probe."""
    from envdoctor.probe import loads
    from envdoctor.probe.target import RunningScript, Target

    (tmp_path / "slowmod.py").write_text("import time\ntime.sleep(3)\nVALUE = 1\n")
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py",
                        ["module", "slowmod", "30", str(tmp_path)], 40, out_is_dir=True)
    deadline = time.monotonic() + 20
    running = False
    while not running and time.monotonic() < deadline and run.proc.poll() is None:
        data = run.read_json("module.json") or {}  # wait until the import is under way
        running = any(st.get("name") == "slowmod" and st.get("status") == "running" for st in data.get("stages", []))
        time.sleep(0.01)
    if not running:
        run.abort()
        pytest.fail("the probe never reported the import as running")
    os.kill(run.proc.pid, signal.SIGINT)
    finished = run.wait()
    outcome = loads._outcome("module", finished.files.get("module.json"), finished)
    result = loads.stage_results(outcome)["slowmod"]
    assert result.status == "ok", (result, finished.stderr)
