r"""Which interpreter to probe when `--python` is not given: candidates are tried before one is used.

On Windows the first `python` on PATH is often not a Python: the Microsoft Store's App Execution
Alias `%LOCALAPPDATA%\Microsoft\WindowsApps\python.exe` only says "Python was not found" (exit 9009)
when no Store Python is installed, and pyenv-win's `shims\python.bat` is a batch file (cmd.exe would
cut a multi-line `-c` at its first newline). So every candidate (VIRTUAL_ENV, CONDA_PREFIX, each
`python`/`python3` along PATH) is run once with a one-line check; a pyenv-win shim is first resolved
to the `python.exe` it stands for; one that does not answer is passed over, with the reason noted.

Path rules take the path flavour (`ntpath` for Windows) so they are tested with Windows paths here;
the file-system parts (a shim's version files, a prefix's layout) are platform-neutral.
"""

from __future__ import annotations

import ntpath
import os
import shutil
import subprocess
from typing import Any, Optional

TRY_TIMEOUT = 20.0
# a one-line program: Python 2 parses it too (a 2.7 found on PATH is reported, not skipped)
_TRY = "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])"
STORE_STUB_EXIT = 9009  # the App Execution Alias without an installed Store Python ("Python was not found")


def interpreter_layout(prefix: str, windows: bool, venv: bool, flavour: Any = os.path) -> list[str]:
    r"""Where an environment keeps its interpreter, in the order to look. Windows: a venv (pyvenv.cfg) in
    `Scripts\python.exe`; conda and a plain install at the prefix root (`Scripts\` holds only tools)."""
    if not windows:
        return [flavour.join(prefix, "bin", "python"), flavour.join(prefix, "bin", "python3")]
    root, scripts = flavour.join(prefix, "python.exe"), flavour.join(prefix, "Scripts", "python.exe")
    return [scripts, root] if venv else [root, scripts]


def interpreter_in(prefix: str) -> Optional[str]:
    """The interpreter of the environment at `prefix` on this machine, or None."""
    venv = os.path.isfile(os.path.join(prefix, "pyvenv.cfg"))
    for windows in ((True, False) if os.name == "nt" else (False, True)):  # this OS's layout first
        for cand in interpreter_layout(prefix, windows, venv):
            if os.path.isfile(cand):
                return cand
    return None


def is_store_alias(path: str, flavour: Any = ntpath) -> bool:
    r"""`…\Microsoft\WindowsApps\python.exe` (or python3.exe, python3.12.exe): the App Execution Alias. It
    starts the Store's Python when one is installed; otherwise it is a stub, which trying it tells."""
    parent = flavour.dirname(flavour.normcase(path))
    return flavour.basename(parent) == "windowsapps" and flavour.basename(flavour.dirname(parent)) == "microsoft"


def is_pyenv_win_shim(path: str, flavour: Any = ntpath) -> bool:
    r"""pyenv-win's `…\pyenv-win\shims\python.bat` (a batch file that runs `pyenv exec`)."""
    p = flavour.normcase(path)
    return p.endswith((".bat", ".cmd")) and flavour.basename(flavour.dirname(p)) == "shims" \
        and flavour.basename(flavour.dirname(flavour.dirname(p))) == "pyenv-win"


def pyenv_win_version(root: str, cwd: str, env: dict[str, str]) -> Optional[str]:
    """The version pyenv-win selects: PYENV_VERSION, else the nearest `.python-version` from `cwd` up,
    else `<root>/version` (the global one). The first name when several are listed."""
    chosen = env.get("PYENV_VERSION", "").split()
    if chosen:
        return chosen[0]
    d = os.path.abspath(cwd)
    files = []
    while True:
        files.append(os.path.join(d, ".python-version"))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    files.append(os.path.join(root, "version"))
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                words = fh.read().split()
        except OSError:
            continue
        if words:
            return words[0]
    return None


def resolve_pyenv_win_shim(shim: str, cwd: str, env: dict[str, str]) -> tuple[Optional[str], str]:
    """(the python.exe a pyenv-win shim stands for, or None; why not)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(shim)))  # …\pyenv-win
    version = pyenv_win_version(root, cwd, env)
    if version is None:
        return None, "a pyenv-win shim with no version selected (pyenv global / local)"
    exe = os.path.join(root, "versions", version, "python.exe")
    if not os.path.isfile(exe):
        return None, f"a pyenv-win shim for version {version}, which is not installed"
    return exe, ""


def try_interpreter(exe: str, env: Optional[dict[str, str]] = None) -> Optional[str]:
    """Run `exe` once with a one-line check. None when it answers as Python, else why not."""
    try:
        proc = subprocess.run([exe, "-c", _TRY], capture_output=True, timeout=TRY_TIMEOUT, stdin=subprocess.DEVNULL,
                              env=env)
    except subprocess.TimeoutExpired:
        return f"no answer within {TRY_TIMEOUT:g} s"
    except OSError as exc:
        return f"cannot run it ({exc.strerror or exc})"
    out = proc.stdout.decode("ascii", "replace").strip()
    if proc.returncode == 0 and out.replace(".", "").isdigit():
        return None
    if proc.returncode == STORE_STUB_EXIT or proc.returncode == STORE_STUB_EXIT - (1 << 32):
        return "the Microsoft Store alias, and no Store Python is installed (exit 9009)"
    said = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:160]
    return f"exit {proc.returncode}" + (f": {said}" if said else "")


def on_path(name: str, path_env: Optional[str] = None) -> list[str]:
    """Every `name` along PATH, in order (not only the first, which may be a stub)."""
    out: list[str] = []
    for d in (path_env if path_env is not None else os.environ.get("PATH", "")).split(os.pathsep):
        if not d:
            continue
        found = shutil.which(name, path=d)  # PATHEXT on Windows: python.exe, python.bat
        if found and found not in out:
            out.append(found)
    return out


def first_working(names: tuple[str, ...], notes: list[str], cwd: Optional[str] = None,
                  path_env: Optional[str] = None) -> Optional[str]:
    """The first interpreter along PATH that answers; each one passed over is noted with the reason."""
    env = dict(os.environ)
    for name in names:
        for found in on_path(name, path_env):
            exe = found
            if is_pyenv_win_shim(found, os.path):
                resolved, why = resolve_pyenv_win_shim(found, cwd or os.getcwd(), env)
                if resolved is None:
                    notes.append(f"{found}: {why}")
                    continue
                exe = resolved
            why_not = try_interpreter(exe)
            if why_not is None:
                return exe
            if is_store_alias(found, os.path):
                why_not = "the Microsoft Store alias, and no Store Python is installed"
            notes.append(f"{found}: passed over: {why_not}")
    return None
