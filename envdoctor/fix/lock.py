"""Where a fix keeps its state for one environment, and the lock that serialises fixes on it.

State lives in `<prefix>/.envdoctor/` for a venv or conda env (it travels with the env and
needs no home directory), else in the user's cache keyed by the prefix's real path (a
system Python's prefix, /usr, is not ours to write into). The lock is an fcntl lock on
`<state>/lock`: two `envdoctor fix` runs on one environment never interleave; the second
waits, then fails with a clear message. The lock's file descriptor is handed to pip so an
orphaned pip (its parent killed with -9) keeps holding it until it exits: recovery never
races a pip that is still writing.
"""

from __future__ import annotations

import errno
import hashlib
import ntpath
import os
import posixpath
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Optional

from envdoctor.errors import UsageError

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows: a byte-range lock on the first byte
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]

_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK)

STATE_NAME = ".envdoctor"
DEFAULT_WAIT = float(os.environ.get("ENVDOCTOR_LOCK_TIMEOUT", "60"))


def user_state_root(environ: Optional[Mapping[str, str]] = None, platform: str = sys.platform,
                    home: Optional[str] = None) -> str:
    """envdoctor's per-user directory: %LOCALAPPDATA%\\envdoctor on Windows (where per-user caches live,
    not roamed), $XDG_CACHE_HOME/envdoctor or ~/.cache/envdoctor elsewhere. Joined in the platform's flavour."""
    env = os.environ if environ is None else environ
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA") or ntpath.join(home or os.path.expanduser("~"), "AppData", "Local")
        return ntpath.join(base, "envdoctor")
    return posixpath.join(env.get("XDG_CACHE_HOME") or posixpath.join(home or str(Path.home()), ".cache"),
                          "envdoctor")


def state_dir(prefix: str | Path) -> Path:
    """The state directory of the environment at `prefix` (not created here)."""
    p = Path(prefix)
    if (p / "pyvenv.cfg").is_file() or (p / "conda-meta").is_dir() or (p / STATE_NAME).is_dir():
        return p / STATE_NAME
    key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:16]
    return Path(user_state_root()) / "envs" / key


class LockBusy(UsageError):
    """Another envdoctor fix holds the environment's lock."""


class EnvLock:
    """Exclusive lock on one environment's state directory."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.fd: Optional[int] = None

    def _open(self) -> int:
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            return os.open(self.state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write envdoctor's state directory {self.state}: "
                             f"{exc.strerror or exc}") from None

    def holder(self) -> str:
        try:
            return (self.state / "lock").read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self, wait: float = DEFAULT_WAIT, on_wait: Optional[Callable[[str], None]] = None) -> bool:
        """Take the lock, waiting up to `wait` seconds. False if still held by someone else."""
        fd = self._open()
        deadline = time.monotonic() + max(wait, 0.0)
        told = False
        while True:
            try:
                _try_lock(fd)
                break
            except OSError as exc:
                if exc.errno not in _BUSY:
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            if on_wait and not told:
                on_wait(self.holder())
                told = True
            time.sleep(0.1)
        if os.name == "posix":  # the holder's pid, for the waiting run's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            try:
                _unlock(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "EnvLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_or_fail(state: Path, wait: float = DEFAULT_WAIT,
                    on_wait: Optional[Callable[[str], None]] = None) -> EnvLock:
    lock = EnvLock(state)
    if not lock.acquire(wait, on_wait):
        raise LockBusy(f"another envdoctor fix is running on this environment ({lock.holder()}, lock "
                       f"{state / 'lock'}); waited {wait:g} s — try again when it has finished")
    return lock
