"""Is a file a Python interpreter? Decided from the file itself, before anything runs in it.

`--python /bin/bash` or `--python build.sh` must be refused, not executed with envdoctor's
bootstrap as arguments: whatever an unknown program does with `-c CODE` is not ours to find out.
Rules, from the first bytes:

- ELF (Linux): a CPython/PyPy launcher links libpython / libpypy (DT_NEEDED), or, built
  statically (Debian's /usr/bin/python3, conda), has `Py_BytesMain` / `Py_Main` in its dynamic
  symbols; every `python` binary calls one of them. It must be an executable (not a library).
- `#!` scripts: a script run *by* Python is not an interpreter; a shell script is not one
  either, except pyenv's shims, which are resolved with `pyenv which` (pyenv is a known program).
- PE (Windows): only on Windows; the launcher of a venv (`pyvenv.cfg` beside or above it) or
  a `python*.exe` / an executable that imports pythonXY.dll. Not run on Windows yet.
- Mach-O: accepted on macOS only (not checked further).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

# struct, not pyelftools: this runs before every probe starts, and pyelftools takes longer to import
from envdoctor.probe.elfhead import ELFError, read_head

HEAD = 4096
SCAN_LIMIT = 64 << 20  # a statically linked interpreter without section headers: bytes searched for its symbols
_MACHO = {b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"}
_PY_ENTRY = (b"\x00Py_BytesMain\x00", b"\x00Py_Main\x00")
_PY_LIB = re.compile(r"^lib(python\d|pypy)")
_SHELLS = ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox")
_PY_NAME = re.compile(r"^(python|pypy|pythonw)[\d.]*[mtd]?(\.exe)?$", re.I)


@dataclass
class Verdict:
    ok: bool
    what: str  # what the file is, in words ("an ELF executable linked to libpython3.11.so.1.0")
    resolved: Optional[str] = None  # the interpreter a known shim stands for


def _shebang(head: bytes) -> Optional[list[str]]:
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return line.split() or [""]


def _script_interpreter(words: list[str]) -> str:
    """`/usr/bin/env -S python3 -u` -> python3; `/bin/sh` -> sh."""
    name = os.path.basename(words[0])
    if name == "env":
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return os.path.basename(rest[0]) if rest else "env"
    return name


def _elf(path: str, head: bytes) -> Verdict:
    try:
        with open(path, "rb") as f:
            elf = read_head(f)
        is_exec, needed, names = elf.is_exec, elf.needed, elf.dynstr
    except (ELFError, OSError, ValueError, struct.error) as exc:
        return Verdict(False, f"an ELF file that cannot be read ({type(exc).__name__})")
    if not is_exec:
        return Verdict(False, "an ELF shared library, not a program")
    lib = next((n for n in needed if _PY_LIB.match(n)), None)
    if lib:
        return Verdict(True, f"an ELF executable linked to {lib}")
    if names is None:  # no section headers (stripped hard): search the file itself, bounded
        with open(path, "rb") as f:
            names = f.read(SCAN_LIMIT)
    if any(sym in names for sym in _PY_ENTRY):
        return Verdict(True, "an ELF executable with Python's entry point")
    return Verdict(False, "an ELF executable that is neither linked to libpython nor has Python's entry point")


def _pyenv_shim(path: str, text: str) -> Optional[Verdict]:
    """pyenv's shims exec `pyenv exec NAME`; `pyenv which NAME` says which interpreter that is."""
    m = re.search(r'^exec "([^"]+/libexec/pyenv)" exec "\$program"', text, re.M)
    if not m:
        return None
    root = re.search(r'^export PYENV_ROOT="([^"]+)"', text, re.M)
    env = dict(os.environ)
    if root:
        env["PYENV_ROOT"] = root.group(1)
    try:
        proc = subprocess.run([m.group(1), "which", os.path.basename(path)], capture_output=True, text=True,
                              timeout=15, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Verdict(False, f"a pyenv shim that pyenv cannot resolve ({exc})")
    found = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not found:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return Verdict(False, f"a pyenv shim that resolves to no interpreter ({why[:160]})")
    return Verdict(True, "a pyenv shim", resolved=found[-1])


def _pe(path: str) -> Verdict:
    if not sys.platform.startswith("win"):
        return Verdict(False, f"a Windows program (PE); this is {sys.platform}")
    here = os.path.dirname(os.path.abspath(path))
    if any(os.path.isfile(os.path.join(d, "pyvenv.cfg")) for d in (here, os.path.dirname(here))):
        return Verdict(True, "a venv's launcher")
    if _PY_NAME.match(os.path.basename(path)):
        return Verdict(True, "a Windows program named like Python")
    with open(path, "rb") as f:
        data = f.read(SCAN_LIMIT)
    if re.search(rb"(?i)python3\d*\.dll|pypy", data):
        return Verdict(True, "a Windows program that loads pythonXY.dll")
    return Verdict(False, "a Windows program that does not load Python")


def identify(path: str) -> Verdict:
    """What `path` is, and whether envdoctor may run its probes with it."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except OSError as exc:
        return Verdict(False, f"a file that cannot be read ({exc.strerror or exc})")
    if not head:
        return Verdict(False, "an empty file")
    if head.startswith(b"\x7fELF"):
        return _elf(path, head)
    if head.startswith(b"MZ"):
        return _pe(path)
    if head[:4] in _MACHO:
        if sys.platform == "darwin":
            return Verdict(True, "a macOS program")
        return Verdict(False, f"a macOS program (Mach-O); this is {sys.platform}")
    words = _shebang(head)
    if words is not None:
        interp = _script_interpreter(words)
        if _PY_NAME.match(interp):
            return Verdict(False, f"a Python script (#!{' '.join(words)}), not the interpreter that runs it")
        if interp in _SHELLS:
            try:
                with open(path, "rb") as f:
                    text = f.read(65536).decode("utf-8", "replace")
            except OSError:
                text = ""
            shim = _pyenv_shim(path, text)
            if shim is not None:
                return shim
            return Verdict(False, f"a shell script (#!{' '.join(words)})")
        return Verdict(False, f"a {interp or 'script'} script (#!{' '.join(words)})")
    return Verdict(False, "neither a program nor a script")
