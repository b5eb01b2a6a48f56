"""Where a fix keeps its state for one environment, and the lock that serialises fixes on it.

State lives in `<prefix>/.envdoctor/` for a venv or conda env (it travels with the env and
needs no home directory), else in the user's cache keyed by the prefix's real path (a
system Python's prefix, /usr, is not ours to write into). The lock is an fcntl lock on
`<state>/lock`: two `envdoctor fix` runs on one environment never interleave; the second
waits, then fails with a clear message. The holder writes its pid, and the pid of each pip it
starts, to `<state>/holder`; pip dies with envdoctor where the platform allows it
(pip_runner.py), and where it does not, the next holder waits for a recorded pip still
running, then refuses: a recovery never races a pip that is still writing.
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
from envdoctor.fix.journal import retry_sharing

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


def is_store_python(prefix: str) -> bool:
    """A Microsoft Store (MSIX-packaged) Python: its prefix is under Program Files\\WindowsApps."""
    return "\\windowsapps\\" in prefix.lower().replace("/", "\\")


def user_state_root(environ: Optional[Mapping[str, str]] = None, platform: str = sys.platform,
                    home: Optional[str] = None, packaged: bool = False) -> str:
    """envdoctor's per-user directory: %LOCALAPPDATA%\\envdoctor on Windows (where per-user caches live,
    not roamed), $XDG_CACHE_HOME/envdoctor or ~/.cache/envdoctor elsewhere. Joined in the platform's flavour.
    `packaged`: the target is a Store Python, whose new files under AppData are redirected to a private
    per-package folder (pip's downloads there would be invisible to envdoctor): %USERPROFILE%\\.envdoctor."""
    env = os.environ if environ is None else environ
    if platform.startswith("win") and packaged:
        return ntpath.join(env.get("USERPROFILE") or home or os.path.expanduser("~"), ".envdoctor")
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
    return Path(user_state_root(packaged=is_store_python(str(prefix)))) / "envs" / key


class LockBusy(UsageError):
    """Another envdoctor fix holds the environment's lock."""


HOLDER = "holder"  # "pid N" of the lock's holder, then one "pip PID START" line per pip it started


def _create_time(pid: int) -> Optional[float]:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # noqa: BLE001 - gone, or not ours to see: nothing to compare against
        return None


def _alive(pid: int, started: Optional[float]) -> bool:
    """Is process `pid` the one recorded (same start time; a reused pid is another process)?"""
    try:
        import psutil

        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < 0.05
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied on a pid that is someone else's now
        return False


def recorded_children(holder: Path) -> list[tuple[int, Optional[float]]]:
    out: list[tuple[int, Optional[float]]] = []
    try:
        lines = holder.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for ln in lines:
        parts = ln.split()
        if len(parts) == 3 and parts[0] == "pip" and parts[1].isdigit():
            out.append((int(parts[1]), None if parts[2] == "-" else float(parts[2])))
    return out


def _wait_for_children(holder: Path, deadline: float, on_wait: Optional[Callable[[str], None]]) -> None:
    """Wait until no pip the previous holder recorded is running; LockBusy naming it once `deadline` passes."""
    told = False
    for pid, started in recorded_children(holder):
        while _alive(pid, started):
            if time.monotonic() >= deadline:
                raise LockBusy(f"pip (pid {pid}) started by an interrupted envdoctor fix is still running on this "
                               f"environment; nothing is recovered under it — try again when it has finished")
            if on_wait and not told:
                on_wait(f"pip pid {pid} of an interrupted fix, still running")
                told = True
            time.sleep(0.1)


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
        """Who holds the lock, as its holder wrote it: "pid N" (and "pip M ..." while its pip runs)."""
        for name in (HOLDER, "lock"):  # "lock": what envdoctor before the holder file wrote
            try:
                text = (self.state / name).read_text().strip()
            except OSError:
                continue
            if text:
                return "; ".join(ln for ln in text.splitlines() if ln.strip())
        return "unknown"

    def record_child(self, pid: int) -> None:
        """Note a pip this holder started (pid and start time), for a later run to wait for if it outlives us."""
        started = _create_time(pid)
        with open(self.state / HOLDER, "a", encoding="utf-8") as f:
            f.write(f"pip {pid} {started if started is not None else '-'}\n")
            f.flush()
            os.fsync(f.fileno())

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
        try:
            # a pip of the previous holder (killed before it) may still be writing: never go on under it
            _wait_for_children(self.state / HOLDER, deadline, on_wait)
        except LockBusy:
            _unlock(fd)
            os.close(fd)
            raise
        # the holder's pid, in a file of its own: on Windows the locked byte of `lock` cannot be read
        tmp = self.state / (HOLDER + ".tmp")
        tmp.write_text(f"pid {os.getpid()}\n", encoding="utf-8")
        retry_sharing(lambda: os.replace(tmp, self.state / HOLDER))  # a waiting run may be reading it
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
