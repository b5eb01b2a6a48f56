"""A pip never outlives the envdoctor that started it, and a recovery never runs under one (issue 12 item 8).

Real parts: real pip (this interpreter's) installing a real wheel of 3,000 files with `--prefix` (pip writes
them in place, one by one: a few seconds), the real lock, and a real `kill -9` of the process that runs
envdoctor's pip runner. Linux kills pip with it (PR_SET_PDEATHSIG); Windows' Job Object is not run here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from envdoctor.fix.lock import HOLDER, EnvLock, LockBusy, recorded_children
from envdoctor.fix.pip_runner import Pip
from envdoctor.fix.wheels import build_wheel
from tests.conftest import ROOT

FILES = 3000


@pytest.fixture(scope="module")
def slow_wheel(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slow")
    pkg = d / "src" / "slowpkg"
    pkg.mkdir(parents=True)
    for i in range(FILES):
        (pkg / f"m{i:04d}.py").write_text(f"X = {i}\n" + "# padding\n" * 40)
    return build_wheel(d / "src", "slowpkg", "1.0", d / "out")


def _installed(prefix: Path) -> list[Path]:
    return list(prefix.glob("lib/python*/site-packages/slowpkg/*.py"))


def _record(prefix: Path) -> list[Path]:
    return list(prefix.glob("lib/python*/site-packages/slowpkg-1.0.dist-info/RECORD"))


RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from envdoctor.fix.lock import EnvLock
    from envdoctor.fix.pip_runner import Pip
    lock = EnvLock(Path(sys.argv[1]))
    assert lock.acquire(5)
    pip = Pip(sys.executable, keep_fds=(lock.fd,), on_start=lock.record_child)
    pip.run("install", "--no-index", "--no-deps", "--prefix", sys.argv[2], sys.argv[3], isolated=True)
    print("pip finished")
""")


def test_kill_9_of_envdoctor_kills_its_pip(slow_wheel, tmp_path):
    state, prefix = tmp_path / "state", tmp_path / "prefix"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(state), str(prefix), str(slow_wheel)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _installed(prefix):  # pip is writing the files in place now
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    children = recorded_children(state / HOLDER)
    assert len(children) == 1 and psutil.Process(children[0][0]).cmdline()[1:3] == ["-m", "pip"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pid = children[0][0]
    deadline = time.time() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "pip outlived the envdoctor that started it"
        time.sleep(0.02)
    time.sleep(0.5)  # had pip lived on, it would be finishing the install now
    assert len(_installed(prefix)) < FILES and not _record(prefix), "pip ran on after envdoctor was killed"
    # the lock is free again (pip held an inherited copy of it) and the next holder is told nothing is running
    lock = EnvLock(state)
    assert lock.acquire(2)
    assert lock.holder() == f"pid {os.getpid()}"
    lock.release()


def test_a_recovery_waits_for_a_pip_left_running_then_refuses(slow_wheel, tmp_path):
    """Where nothing kills pip with envdoctor (macOS; Windows without a job): the next run must wait for it."""
    state, prefix = tmp_path / "state", tmp_path / "prefix"
    first = EnvLock(state)
    assert first.acquire(1)
    assert first.holder() == f"pid {os.getpid()}"  # written on every platform, in its own file
    pip = subprocess.Popen(Pip(sys.executable).argv("install", "--no-index", "--no-deps", "--prefix", str(prefix),
                                                    str(slow_wheel)),
                           env=Pip(sys.executable).env(isolated=True), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        first.record_child(pip.pid)
        assert f"pip {pip.pid}" in first.holder()
        # the holder dies without a word: its lock goes, its pip runs on
        assert first.fd is not None
        os.close(first.fd)
        first.fd = None
        second = EnvLock(state)
        with pytest.raises(LockBusy, match=f"pip \\(pid {pip.pid}\\).*still running"):
            second.acquire(0.3)
        assert pip.poll() is None  # the refusal was about a pip really still running
        told: list[str] = []
        assert second.acquire(120, told.append)  # waits for it ...
        assert pip.poll() is not None and _record(prefix)  # ... and goes on only once pip has finished
        assert told and str(pip.pid) in told[0]
        second.release()
    finally:
        if pip.poll() is None:
            pip.kill()
            pip.wait()
