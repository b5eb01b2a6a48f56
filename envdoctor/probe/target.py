"""Choose the target interpreter and run the probe scripts inside it.

Every script runs in its own subprocess of the target interpreter, in a scratch
directory, with a timeout; its result comes back through a private file (never
stdout, which imported modules print to). A crash or hang is a result, not an
exception.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from envdoctor.errors import UsageError

SCRIPTS = Path(__file__).parent / "scripts"

# Runs first in the target: Python 2 must parse it, so that an old interpreter
# gets a clear message instead of a SyntaxError from the probe script.
BOOTSTRAP = (
    "import sys\n"
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
    selected_by: str


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


def _interpreter_in(prefix: Path) -> Optional[Path]:
    for rel in ("bin/python", "bin/python3", "python.exe", "Scripts/python.exe"):
        cand = prefix / rel
        if cand.is_file():
            return cand
    return None


def resolve(python: Optional[str]) -> Target:
    """--python PATH, else the active venv / conda env, else `python` on PATH, else ourselves."""
    if python:
        # absolute, but not resolved: a venv's bin/python is a symlink that must stay one
        path = Path(os.path.abspath(Path(python).expanduser()))
        if path.is_dir():
            exe = _interpreter_in(path)
            if exe is None:
                raise UsageError(f"--python {python}: a directory, but no bin/python or python.exe in it")
            return Target(str(exe), "--python")
        if not path.exists():
            found = shutil.which(python)
            if found is None:
                raise UsageError(f"--python {python}: no such file")
            path = Path(found)
        if not os.access(path, os.X_OK):
            raise UsageError(f"--python {python}: not an executable file")
        return Target(str(path), "--python")
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = os.environ.get(var)
        if value:
            exe = _interpreter_in(Path(value))
            if exe is not None:
                return Target(str(exe), var)
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found:
            return Target(found, "PATH")
    return Target(sys.executable, "self")


def run_script(target: Target, script: str, args: list[str], timeout: float) -> ScriptRun:
    """Run scripts/<script> in the target; its JSON result comes back through a temp file."""
    scratch = tempfile.mkdtemp(prefix="envdoctor-")
    out = os.path.join(scratch, "result.json")
    cmd = [target.executable, "-c", BOOTSTRAP, str(SCRIPTS / script), out, *args]
    env = dict(os.environ)
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS"] = "1"
    start = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=(os.name == "posix"),
        )
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UsageError(f"cannot run {target.executable}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - start
    data = None
    try:
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rc = proc.returncode
    sig = None
    if rc is not None and rc < 0 and not timed_out:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
    return ScriptRun(
        data=data,
        returncode=rc,
        signal=sig,
        timed_out=timed_out,
        seconds=round(seconds, 3),
        stderr=stderr.decode("utf-8", "backslashreplace")[-8000:],
        stdout_bytes=len(stdout),
    )


def _kill(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (OSError, ProcessLookupError):
        pass
