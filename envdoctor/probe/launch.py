"""Start a long-running process of the target interpreter (a source build) and stop it cleanly.

The process gets its own session, so a Ctrl-C in the terminal reaches envdoctor only;
envdoctor then stops the whole group (the compiler jobs ninja started included) and
nothing of it keeps running. Output is one merged byte stream, read line by line by the caller.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Optional

from envdoctor.errors import UsageError


def start(argv: list[str], env: dict[str, str], cwd: Optional[str] = None) -> subprocess.Popen:
    """Run argv (argv[0] is the target interpreter) with stdout+stderr merged into one pipe."""
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=(os.name == "posix"))
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def run(argv: list[str], env: dict[str, str], timeout: float, cwd: Optional[str] = None) -> tuple[int, str]:
    """Run to completion; (exit code, merged output). A timeout stops the group and returns -9."""
    proc = start(argv, env, cwd)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=0)
        out, _ = proc.communicate()
        return -9, out.decode("utf-8", "replace")
    except BaseException:
        stop(proc, grace=0)
        raise
    return proc.returncode, out.decode("utf-8", "replace")


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGINT the process group (what a terminal's Ctrl-C would have sent), then SIGKILL what is left."""
    if os.name != "posix":
        proc.kill()
        proc.wait()
        return
    if grace > 0 and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=grace)
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        # the leader may be gone while compiler jobs of its group still run
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
