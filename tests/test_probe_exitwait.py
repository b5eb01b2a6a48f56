"""probe/exitwait.py: a child's exit, seen through a pidfd (Linux) or the poll elsewhere; real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from envdoctor.probe.exitwait import ExitWaiter


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "poll"])
def test_wait_says_whether_the_child_has_exited(monkeypatch, pidfd):
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)  # macOS, Windows, Python < 3.9
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open here")
    proc = _child("import sys; sys.stdin.read(); sys.exit(3)")  # runs until its stdin closes
    waiter = ExitWaiter(proc)
    try:
        assert (waiter._fd is not None) == pidfd
        assert waiter.wait(0.05) is False and proc.returncode is None  # still running: not reaped, not killed
        assert proc.stdin is not None
        proc.stdin.close()
        assert waiter.wait(60) is True
        assert proc.poll() == 3  # reaped by wait's poll, exit code kept
        assert waiter.wait(0) is True  # and stays so
    finally:
        waiter.close()
        waiter.close()  # idempotent
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_child_that_already_exited_needs_no_descriptor():
    proc = _child("pass")
    proc.wait()
    waiter = ExitWaiter(proc)
    assert waiter._fd is None and waiter.wait(0) is True


def test_a_huge_timeout_is_waited_in_bounded_steps():
    """`check --timeout 5e9` reached select() with a value past time_t (OverflowError, exit 2; review finding)."""
    proc = _child("import sys; sys.stdin.read()")
    waiter = ExitWaiter(proc)
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # it ends soon, while wait() is already waiting
        assert waiter.wait(5e9) is True and proc.returncode == 0
    finally:
        waiter.close()
