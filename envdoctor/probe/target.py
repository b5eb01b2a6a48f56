"""Choose the target interpreter and run the probe scripts inside it.

Every script runs in its own subprocess of the target interpreter, in a scratch
directory, with a timeout; its result comes back through a private file (never
stdout, which imported modules print to). A crash or hang is a result, not an
exception.
"""

from __future__ import annotations

import errno
import json
import ntpath
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from envdoctor.errors import UsageError
from envdoctor.probe import choose
from envdoctor.probe.exitwait import ExitWaiter
from envdoctor.probe.interpreter import identify

SCRIPTS = Path(__file__).parent / "scripts"

# Runs first in the target: Python 2 must parse it, so that an old interpreter
# gets a clear message instead of a SyntaxError from the probe script.
BOOTSTRAP = (
    "import sys\n"
    "sys.path[0] = ''\n"  # as with -c: the bootstrap's directory (the scratch directory) is not searched
    "if sys.version_info < (3, 6):\n"
    "    sys.stderr.write('ENVDOCTOR-OLD-PYTHON %d.%d.%d\\n' % tuple(sys.version_info[:3]))\n"
    "    sys.exit(97)\n"
    "script = sys.argv[1]\n"
    "sys.argv = sys.argv[1:]\n"
    "import runpy\n"
    "runpy.run_path(script, run_name='__main__')\n"
)
OLD_PYTHON_EXIT = 97


@dataclass
class Target:
    executable: str
    selected_by: str  # --python | VIRTUAL_ENV | CONDA_PREFIX | PATH | self
    notes: list[str] = field(default_factory=list)  # candidates passed over, and why


def scratch_root(executable: str, environ: Optional[Mapping[str, str]] = None,
                 platform: str = sys.platform) -> Optional[str]:
    r"""Where a probe's scratch directory goes; None: the system's temporary directory.

    A Microsoft Store (MSIX-packaged) Python, started from `C:\Program Files\WindowsApps\…` or through its
    alias in `%LOCALAPPDATA%\Microsoft\WindowsApps`, has its new files under AppData redirected to a private
    per-package folder. %TEMP% is under AppData, so its results would land where envdoctor never looks: the
    probe writes under %USERPROFILE%\.envdoctor\tmp instead (the state root fix/lock.py uses for such a target).
    """
    if not platform.startswith("win") or "\\windowsapps\\" not in executable.lower().replace("/", "\\"):
        return None
    env = os.environ if environ is None else environ
    return ntpath.join(env.get("USERPROFILE") or os.path.expanduser("~"), ".envdoctor", "tmp")


@dataclass
class ScriptRun:
    data: Optional[dict[str, Any]]
    returncode: Optional[int]
    signal: Optional[str] = None
    timed_out: bool = False
    seconds: float = 0.0
    stderr: str = ""
    stdout_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    # every file the script left in its output directory: *.json parsed, other files as text
    files: dict[str, Any] = field(default_factory=dict)


def _interpreter_in(prefix: Path) -> Optional[Path]:
    found = choose.interpreter_in(str(prefix))
    return Path(found) if found else None


def _checked(option: str, exe: str) -> str:
    """exe itself if it is a Python interpreter (a pyenv shim: the interpreter it stands for); else exit 2,
    before anything has run in it. A pyenv-win shim (`python.bat`) is the python.exe it stands for."""
    if choose.is_pyenv_win_shim(exe, os.path):
        resolved, why = choose.resolve_pyenv_win_shim(exe, os.getcwd(), dict(os.environ))
        if resolved is None:
            raise UsageError(f"--python {option}: not a Python interpreter: {why}")
        exe = resolved
    verdict = identify(exe)
    if verdict.ok and verdict.resolved:
        inner = identify(verdict.resolved)
        if not inner.ok:
            raise UsageError(f"--python {option}: not a Python interpreter: {verdict.what} for {verdict.resolved}, "
                             f"{inner.what}")
        return verdict.resolved
    if not verdict.ok:
        raise UsageError(f"--python {option}: not a Python interpreter: {verdict.what}")
    return exe


def resolve(python: Optional[str]) -> Target:
    """--python PATH, else the active venv / conda env, else `python` on PATH, else ourselves."""
    if python:
        # absolute, but not resolved: a venv's bin/python is a symlink that must stay one
        path = Path(os.path.abspath(Path(python).expanduser()))
        if path.is_dir():
            exe = _interpreter_in(path)
            if exe is None:
                raise UsageError(f"--python {python}: a directory, but no bin/python or python.exe in it")
            return Target(_checked(python, str(exe)), "--python")
        if not path.exists():
            found = shutil.which(python) if os.sep not in python else None
            if found is None:
                if path.is_symlink():  # a dangling link or a loop: say which, "no such file" misleads
                    try:
                        path.resolve(strict=True)
                        why = "a broken symbolic link"
                    except RuntimeError:  # Python < 3.13 reports a loop this way
                        why = "a symbolic link loop"
                    except OSError as exc:
                        why = "a symbolic link loop" if exc.errno == errno.ELOOP else "a broken symbolic link"
                    raise UsageError(f"--python {python}: {why}")
                raise UsageError(f"--python {python}: no such file")
            path = Path(found)
        if not os.access(path, os.X_OK):
            raise UsageError(f"--python {python}: not an executable file")
        return Target(_checked(python, str(path)), "--python")
    notes: list[str] = []
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = os.environ.get(var)
        if value:
            exe = _interpreter_in(Path(value))
            if exe is None:
                notes.append(f"{var} is set to {value}, but it holds no interpreter")
                continue
            why_not = choose.try_interpreter(str(exe))
            if why_not is None:
                return Target(str(exe), var, notes)
            notes.append(f"{var}: {exe}: passed over: {why_not}")
    found = choose.first_working(("python", "python3"), notes)
    if found:
        return Target(found, "PATH", notes)
    notes.append("no working python or python3 on PATH")
    return Target(sys.executable, "self", notes)


def _signal_name(returncode: Optional[int]) -> Optional[str]:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# Every probe process still running (or not yet cleaned up), so that an interrupt anywhere in envdoctor can
# end them all and remove their scratch directories (which hold unredacted paths and output).
_LIVE: "list[RunningScript]" = []
_shield_state = {"depth": 0, "pending": False}


def _deferred_sigint(signum: int, frame: Any) -> None:
    _shield_state["pending"] = True


@contextmanager
def shielded() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) while a probe process and its scratch directory are created or torn down.

    A KeyboardInterrupt between `mkdtemp` and `Popen`, or inside `Popen` after the fork, would lose the handle
    of a running process or directory. The interrupt is not lost: it is raised as soon as the section ends.
    Only the main thread can set signal handlers; elsewhere this is a no-op (Ctrl-C goes to the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = _shield_state["depth"] == 0
    previous: Any = None
    if outer:
        try:
            previous = signal.signal(signal.SIGINT, _deferred_sigint)
        except ValueError:
            outer = False
    _shield_state["depth"] += 1
    try:
        yield
    finally:
        _shield_state["depth"] -= 1
        if outer:
            signal.signal(signal.SIGINT, previous)
            if _shield_state["pending"]:
                _shield_state["pending"] = False
                if callable(previous) and previous is not _deferred_sigint:
                    previous(signal.SIGINT, None)
                elif previous == signal.SIG_DFL:
                    raise KeyboardInterrupt


def abort_all() -> None:
    """Kill every probe process (and its process group) still alive and remove every scratch directory."""
    with shielded():
        for run in list(_LIVE):
            run.abort()


class RunningScript:
    """A probe script running in the target interpreter, in its own scratch directory and session.

    Output goes to files (the result JSON, the process's stdout and stderr), never to
    pipes, so the caller can poll progress without risk of a pipe filling up.
    """

    def __init__(self, target: Target, script: str, args: list[str], timeout: float, out_is_dir: bool = False,
                 env: Optional[dict[str, str]] = None, stdin_pipe: bool = False) -> None:
        with shielded():
            try:
                self._start(target, script, args, timeout, out_is_dir, env, stdin_pipe)
            except BaseException:
                self.abort()
                raise

    def _start(self, target: Target, script: str, args: list[str], timeout: float, out_is_dir: bool,
               env: Optional[dict[str, str]], stdin_pipe: bool) -> None:
        self.target = target
        self.timeout = timeout
        root = scratch_root(target.executable)
        if root:
            os.makedirs(root, exist_ok=True)
        self.scratch = tempfile.mkdtemp(prefix="envdoctor-", dir=root)
        _LIVE.append(self)
        self.out_dir = os.path.join(self.scratch, "out")
        os.mkdir(self.out_dir)
        first = self.out_dir if out_is_dir else os.path.join(self.out_dir, "result.json")
        # the bootstrap goes as a file: through a .bat or cmd.exe a multi-line -c ends at its first newline
        bootstrap = os.path.join(self.scratch, "bootstrap.py")
        with open(bootstrap, "w", encoding="ascii") as f:
            f.write(BOOTSTRAP)
        cmd = [target.executable, bootstrap, str(SCRIPTS / script), first, *args]
        full_env = dict(os.environ)
        full_env["PYTHONFAULTHANDLER"] = "1"
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        full_env["TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS"] = "1"
        full_env["PYTHONIOENCODING"] = "utf-8"  # its stderr is read as UTF-8, not in the console's code page
        if env:
            full_env.update(env)
        self._stdout = open(os.path.join(self.scratch, "proc.stdout"), "wb")
        self._stderr = open(os.path.join(self.scratch, "proc.stderr"), "wb")
        self.start = time.monotonic()
        self.timed_out = False
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.scratch,
                env=full_env,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,  # a pipe: requests (--hold)
                stdout=self._stdout,
                stderr=self._stderr,
                # its own session (POSIX) / process group (Windows): the terminal's Ctrl-C reaches envdoctor
                # only, which then ends the probes itself; a probe never swallows it as an import result
                start_new_session=(os.name == "posix"),
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        except OSError as exc:
            raise UsageError(f"cannot run {target.executable}: {exc.strerror or exc}") from None

    def abort(self) -> None:
        """End the process group, close the files, remove the scratch directory (idempotent)."""
        with shielded():
            proc = getattr(self, "proc", None)  # None when Popen itself failed or was never reached
            if proc is not None:
                _kill(proc)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self._close()
            scratch = getattr(self, "scratch", None)  # None when mkdtemp itself failed
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            if self in _LIVE:
                _LIVE.remove(self)

    def _close(self) -> None:
        proc = getattr(self, "proc", None)
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None), getattr(proc, "stdin", None)):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def poll(self) -> Optional[int]:
        """The exit code, or None while running; kills the process group once the timeout has passed."""
        rc = self.proc.poll()
        if rc is None and self.elapsed() > self.timeout:
            self.timed_out = True
            _kill(self.proc)
            rc = self.proc.wait()
        return rc

    def read_json(self, name: str) -> Optional[dict[str, Any]]:
        # read whole and close at once: on Windows an open file cannot be replaced, and the probe is waiting
        # to swap in its next state; a file being replaced (absent, denied, half-written) is read next tick
        try:
            with open(os.path.join(self.out_dir, name), "rb") as f:
                raw = f.read()
        except OSError:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def wait(self, tick: Optional[Callable[["RunningScript"], None]] = None, interval: float = 0.05) -> ScriptRun:
        """Until the process exits or its timeout passes (then it is killed), calling `tick` every `interval`."""
        waiter = ExitWaiter(self.proc)  # wakes at the exit, not at the next poll
        try:
            while self.poll() is None:
                if tick is not None:
                    tick(self)
                left = self.timeout - self.elapsed()
                waiter.wait(min(interval, left) if tick is not None else left)
        finally:
            waiter.close()
        return self.finish()

    def finish(self) -> ScriptRun:
        with shielded():
            return self._finish()

    def _finish(self) -> ScriptRun:
        rc = self.proc.returncode
        seconds = self.elapsed()
        # Forked children of a parent that died would be orphans: end the whole session.
        _kill(self.proc)
        self._close()
        files = read_files(self.out_dir)
        try:
            stdout_bytes = os.path.getsize(os.path.join(self.scratch, "proc.stdout"))
            with open(os.path.join(self.scratch, "proc.stderr"), "rb") as f:
                stderr = f.read()[-8000:].decode("utf-8", "backslashreplace")
        except OSError:
            stdout_bytes, stderr = 0, ""
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)
        return ScriptRun(
            data=files.get("result.json"),
            returncode=rc,
            signal=None if self.timed_out else _signal_name(rc),
            timed_out=self.timed_out,
            seconds=round(seconds, 3),
            stderr=stderr,
            stdout_bytes=stdout_bytes,
            files=files,
        )


def read_files(directory: str) -> dict[str, Any]:
    """Every file a script left in `directory`: *.json parsed, *.stdout as its size, other files as text."""
    files: dict[str, Any] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        names = []
    for name in names:
        if name.endswith(".tmp"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                raw = f.read(1 << 22)
        except OSError:
            continue
        if name.endswith(".json"):
            try:
                files[name] = json.loads(raw.decode("utf-8"))
            except ValueError:
                files[name] = None
        elif name.endswith(".stdout"):
            files[name] = len(raw)  # imported code printed this much; never parsed
        else:
            files[name] = raw.decode("utf-8", "backslashreplace")[-8000:]
    return files


def run_script(target: Target, script: str, args: list[str], timeout: float, out_is_dir: bool = False,
               env: Optional[dict[str, str]] = None) -> ScriptRun:
    """Run scripts/<script> in the target and wait; its JSON result comes back through a file."""
    run = RunningScript(target, script, args, timeout, out_is_dir=out_is_dir, env=env)
    try:
        return run.wait()
    except BaseException:  # Ctrl-C while waiting: the probe must not outlive us, nor its scratch directory
        run.abort()
        raise


def _kill(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (OSError, ProcessLookupError):
        pass
