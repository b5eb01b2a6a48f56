"""Run pip of the TARGET interpreter (`python -m pip`), never our own (and its compileall, for the byte-code of
what envdoctor installs itself).

The target's layout (install paths, markers) comes from the probe (envdoctor.probe.target_layout).
pip itself runs from here, not from probe/: it is the one process of the target that writes to it,
and its life is tied to the transaction's (the lock's descriptor, death with envdoctor, the journal's
crash points), which probe/'s read-only scripts have no business knowing.

Every call is logged to the transaction directory. The environment lock's descriptor is
passed down so that a pip left running by a killed `envdoctor fix` still holds the lock.
"""

from __future__ import annotations

import ctypes
import ntpath
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote, urlparse

from envdoctor.fix.journal import wants_crash

def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str, flavour: ModuleType = os.path) -> str:
    """A local index given as a path or a file:// URL, as a path of the target's flavour:
    file:///C:/w -> C:\\w and file://server/share/w -> \\\\server\\share\\w on Windows."""
    if not url.startswith("file://"):
        return flavour.abspath(flavour.expanduser(url))
    u = urlparse(url)
    path = unquote(u.path)
    if flavour is not ntpath:
        return path
    if u.netloc and u.netloc.lower() != "localhost":
        return "\\\\" + u.netloc + path.replace("/", "\\")
    if re.match(r"^/[A-Za-z][:|]", path):  # "/C:/w" (and the old "/C|/w" form)
        path = path[1] + ":" + path[3:]
    return path.replace("/", "\\")


def source_args(index_url: Optional[str], find_links: Optional[str] = None, choice_index: Optional[str] = None,
                extra: Iterable[str] = ()) -> list[str]:
    """pip arguments saying where wheels come from. A user's --index-url replaces every other source;
    a local directory (or file:// URL) is used as find-links with --no-index: tests never touch the network."""
    if index_url:
        if is_local(index_url):
            return ["--no-index", "--find-links", local_path(index_url)]
        return ["--index-url", index_url]
    out: list[str] = []
    if choice_index:
        out += ["--index-url", choice_index]
    if find_links:
        out += ["--find-links", find_links]
    return out + list(extra)


def display(argv: list[str], python: str) -> str:
    """A command as the user would type it: `<python> -m pip ...`."""
    return " ".join(shlex.quote(a) for a in argv)


def die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn making the child die (SIGKILL) when envdoctor dies, even by kill -9, so that no pip
    writes on after the transaction that started it (Linux: PR_SET_PDEATHSIG). None elsewhere: there
    the inherited lock descriptor and the recorded pid make a recovery wait for a pip left running."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: async-signal-safe calls only
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # envdoctor died before the line above: nobody would kill us later
            os._exit(1)

    return arm


PR_SET_PDEATHSIG = 1
_jobs: list[Any] = []  # Windows Job Object handles, open for envdoctor's lifetime


def kill_on_close_job(proc: subprocess.Popen) -> bool:  # pragma: no cover - Windows only, not run here yet
    """Put `proc` in a Job Object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE. The handle stays open in this
    process; when envdoctor exits, however it dies, Windows closes it and kills pip with it. False if the
    job cannot be made (then the recorded pid makes a recovery wait, as on other platforms)."""
    import ctypes.wintypes as wt

    class _Basic(ctypes.Structure):
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", wt.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wt.DWORD),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", wt.DWORD), ("SchedulingClass", wt.DWORD)]

    class _Io(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                                                   "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

    class _Extended(ctypes.Structure):
        _fields_ = [("BasicLimitInformation", _Basic), ("IoInfo", _Io), ("ProcessMemoryLimit", ctypes.c_size_t),
                    ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t),
                    ("PeakJobMemoryUsed", ctypes.c_size_t)]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.CreateJobObjectW.restype = wt.HANDLE
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return False
    info = _Extended()
    info.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    extended_limit_information = 9
    if not kernel32.SetInformationJobObject(job, extended_limit_information, ctypes.byref(info),
                                            ctypes.sizeof(info)):
        kernel32.CloseHandle(job)
        return False
    if not kernel32.AssignProcessToJobObject(job, wt.HANDLE(int(proc._handle))):  # type: ignore[attr-defined]
        kernel32.CloseHandle(job)
        return False
    _jobs.append(job)
    return True


@dataclass
class PipResult:
    argv: list[str]
    returncode: int
    output: str
    seconds: float
    log: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 6) -> str:
        text = [ln for ln in self.output.strip().splitlines() if ln.strip()]
        return "\n".join(text[-lines:])


@dataclass
class Pip:
    python: str
    log_dir: Optional[Path] = None
    keep_fds: tuple[int, ...] = ()
    timeout: float = 3600
    calls: list[PipResult] = field(default_factory=list)
    on_start: Optional[Callable[[int], None]] = None  # gets pip's pid once it runs (the lock records it)
    user: bool = False  # the fix's distributions live in the user site (fix/user_site.py)

    def argv(self, *args: str) -> list[str]:
        return [self.python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]

    def env(self, isolated: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        if isolated:
            # local wheels only: the user's pip config and PIP_* settings (find-links, extra
            # indexes, constraints) must not add other sources or pins to what we install
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"  # pip's output is decoded as UTF-8, not in the console's code page
        if self.user:  # pip must see (and uninstall from) the user site; installs say --user themselves
            env.pop("PYTHONNOUSERSITE", None)
        else:  # never let pip "default to user installation" when site-packages is not writable
            env["PYTHONNOUSERSITE"] = "1"
        env.pop("PIP_USER", None)
        env.pop("PYTHONPATH", None)  # pip must see the target's packages, not ours
        return env

    def compile(self, paths: list[str], name: str) -> PipResult:
        """Byte-code for these .py files, written by the target itself (`-m compileall`, as pip compiles what it
        installs): envdoctor's own write of the compat wheel, where envdoctor's Python is not the target's."""
        # the byte-code pip's RECORD would list: the plain level, in __pycache__ beside each file
        return self.run(name=name, argv=[self.python, "-m", "compileall", "-q", "-f", *paths],
                        drop=("PYTHONOPTIMIZE", "PYTHONPYCACHEPREFIX"))

    def run(self, *args: str, name: str = "pip", watch: Iterable[str] = (), isolated: bool = False,
            argv: Optional[list[str]] = None, drop: tuple[str, ...] = ()) -> PipResult:
        """Run one pip command (or `argv`, another process of the target that writes to it). With
        ENVDOCTOR_FIX_CRASH_AT=<name>:during this process kills itself once pip has written one of the
        `watch` paths (the test of a crash in the middle of pip)."""
        argv = argv or self.argv(*args)
        start = time.monotonic()
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{len(self.calls):02d}-{name.replace(':', '-')}.log"
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={k: v for k, v in self.env(isolated).items() if k not in drop},
                                preexec_fn=die_with_parent(),
                                pass_fds=self.keep_fds if os.name == "posix" else ())
        if os.name == "nt":
            kill_on_close_job(proc)
        if self.on_start is not None:
            self.on_start(proc.pid)
        if wants_crash(name, "during"):
            watched = list(watch)
            while proc.poll() is None and not any(os.path.lexists(p) for p in watched):
                time.sleep(0.005)
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        except BaseException:
            # Ctrl-C / SIGTERM: pip must be gone before anything is rolled back (a second Ctrl-C while
            # waiting leaves it to the lock: pip holds it until it exits, and recovery waits for it)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
        text = out.decode("utf-8", "replace")
        res = PipResult(argv, proc.returncode, text, round(time.monotonic() - start, 3),
                        str(log_path) if log_path else None)
        if log_path is not None:
            log_path.write_text(f"$ {display(argv, self.python)}\n{text}\n[exit {proc.returncode}]\n",
                                encoding="utf-8")
        self.calls.append(res)
        return res
