"""Wait for a child process to exit, waking when it exits rather than at the next poll.

`Popen.wait(timeout)` polls with sleeps that grow to 50 ms, and a tick loop that sleeps its interval
adds up to that again: a quarter of `check --quick`, whose one probe runs for ~0.1 s. On Linux a pidfd
becomes readable the moment the process exits; elsewhere (macOS, Windows, old kernels) this falls back
to the poll.
"""

from __future__ import annotations

import os
import select
import subprocess
from typing import Optional


MAX_WAIT = 3600.0  # one wait at most; `--timeout 5e9` overflowed select's time_t


class ExitWaiter:
    """One child's exit: `wait(seconds)` returns True once it has exited (not reaped: call proc.poll())."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._fd: Optional[int] = None
        pidfd_open = getattr(os, "pidfd_open", None)  # Linux >= 5.3, Python >= 3.9
        if pidfd_open is not None and proc.returncode is None:
            try:
                self._fd = pidfd_open(proc.pid)
            except OSError:  # a kernel without pidfds, or a seccomp filter that denies them
                self._fd = None

    def wait(self, seconds: float) -> bool:
        if self.proc.poll() is not None:
            return True
        seconds = min(max(0.0, seconds), MAX_WAIT)  # the caller loops; poll() takes no huge value
        if self._fd is not None:
            poller = select.poll()  # not select(): it fails for a descriptor >= 1024
            poller.register(self._fd, select.POLLIN)
            poller.poll(int(seconds * 1000) + 1)  # readable once the process has exited
            return self.proc.poll() is not None
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
