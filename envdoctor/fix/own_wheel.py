"""Install the compat layer's wheel (which envdoctor built itself) without pip.

Why: pip's own start (it imports itself and reads every installed distribution's metadata) takes 0.7 s on a
2-core machine, a third of a whole `check`, to copy some thirty files; and a target with no pip at all (a
`uv venv`) could not take the compat layer. Only where nothing but writing is needed: a pure wheel with no
`.data` directory and no scripts, of a distribution not installed, none of whose files exists yet (the plan
decides: `Action.installer`). Anything else goes to pip.

What it writes is what pip writes for such a wheel, in the same way, so that the transaction's record, its
recovery and pip itself treat it alike:
- each member in the archive's order, in place (open, write, close): a process killed half-way leaves at most
  the file it was writing short, the last of the wheel's files present (fix/owned.py `cut_off`);
- each member's bytes checked against the wheel's RECORD first;
- byte-code for each `.py` file: compiled here where this interpreter's byte-code is the target's (the same
  magic number: the same Python), else by the target itself (`-m compileall`, as pip does);
- INSTALLER (`envdoctor`), REQUESTED, and RECORD last (every file with its sha256; RECORD itself without), each
  through a temporary file renamed over it, as pip does, so `pip uninstall envdoctor-compat` and `pip show`
  work as after a pip install.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import io
import os
import py_compile
import secrets
import signal
import zipfile
from pathlib import Path
from typing import Callable, Optional

from envdoctor.fix.journal import wants_crash
from envdoctor.fix.result import FixFailed
from envdoctor.fix.wheels import record_hash, wheel_metadata

INSTALLER = "envdoctor"


def unfit(wheel: Path) -> Optional[str]:
    """Why this wheel is not one to write without pip (None: it is)."""
    meta = wheel_metadata(wheel)
    if not meta["purelib"]:
        return "not a pure wheel"
    if meta["scripts"]:
        return "it has scripts"
    if any(m.split("/", 1)[0].endswith(".data") for m in meta["members"]):
        return "it has a .data directory"
    return None


def _dest(root: str, member: str) -> str:
    path = os.path.normpath(os.path.join(root, *member.split("/")))
    if os.path.isabs(member) or not path.startswith(os.path.join(root, "")):
        raise FixFailed(f"wheel member {member!r} is outside the install directory")
    return path


def _absent(path: str) -> None:
    if os.path.lexists(path):  # apply installs only where none of the wheel's files exists (targets)
        raise FixFailed(f"{path} exists: not written over (pip installs over files, envdoctor does not)")


def _write(path: str, data: bytes, mode: int, crash_half: bool) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _absent(path)
    with open(path, "wb") as f:
        if crash_half:  # the test of a kill while a file is being written: half of it, then SIGKILL
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        f.write(data)
    if mode & 0o111:
        os.chmod(path, mode & 0o777)


def _pyc(path: str, tag: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, "__pycache__", f"{name[:-3]}.{tag}.pyc")


def _compile(path: str, tag: str) -> Optional[str]:
    """The byte-code of a .py file written just now, named for the target (its tag)."""
    cfile = _pyc(path, tag)
    try:
        py_compile.compile(path, cfile=cfile, dfile=path, doraise=True, optimize=0,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    except py_compile.PyCompileError:  # pip leaves such a file uncompiled too
        return None
    return cfile


def install(wheel: Path, root: str, bytecode: Optional[dict[str, str]], step: str = "install",
            compile_in_target: Optional[Callable[[list[str]], object]] = None) -> list[str]:
    """Write the wheel's files under `root` (site-packages). Returns the paths written. `bytecode`: the
    target's (probe/layout.py); `compile_in_target(paths)`: the target compiles these .py files itself (where
    this Python is not the target's). ENVDOCTOR_FIX_CRASH_AT=<step>:during kills this process half-way through
    the second file."""
    why = unfit(wheel)
    if why:
        raise FixFailed(f"{wheel.name}: {why}; envdoctor installs only its own pure wheels without pip")
    root = os.path.normpath(root)
    info = wheel_metadata(wheel)["dist_info"]
    tag = bytecode["tag"] if bytecode and bytecode.get("magic") == importlib.util.MAGIC_NUMBER.hex() else None
    crash = wants_crash(step, "during")
    rows: list[list[str]] = []
    written: list[str] = []
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(f"{info}/RECORD").decode("utf-8")
        expected = {r[0]: r[1] for r in csv.reader(io.StringIO(text)) if len(r) > 1}
        for zi in zf.infolist():
            member = zi.filename
            if member.endswith("/") or member == f"{info}/RECORD":
                continue
            data = zf.read(zi)
            digest = record_hash(data)
            if expected.get(member) != digest:
                raise FixFailed(f"{wheel.name}: {member} does not match the wheel's RECORD")
            path = _dest(root, member)
            _write(path, data, (zi.external_attr >> 16) & 0o777, crash and len(written) == 1)
            written.append(path)
            rows.append([member, digest, str(len(data))])
    sources = [p for p in written if p.endswith(".py")]
    if tag:  # the same Python: its byte-code is the target's
        compiled = [c for c in (_compile(p, tag) for p in sources) if c is not None]
    elif bytecode and bytecode.get("tag") and compile_in_target is not None and sources:
        compile_in_target(sources)  # what it could not compile stays source, as after pip
        # every byte-code file it wrote for them (an optimisation level of the user's settings included)
        compiled = sorted(c for p in sources for c in glob.glob(glob.escape(_pyc(p, bytecode["tag"])[:-4]) + "*.pyc"))
    else:
        compiled = []
    for cfile in compiled:
        data = Path(cfile).read_bytes()
        rows.append([os.path.relpath(cfile, root).replace(os.sep, "/"), record_hash(data), str(len(data))])
        written.append(cfile)
    for name, data in (("INSTALLER", f"{INSTALLER}\n".encode()), ("REQUESTED", b"")):
        member = f"{info}/{name}"
        written.append(_replace(_dest(root, member), data))
        rows.append([member, record_hash(data), str(len(data))])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([*rows, [f"{info}/RECORD", "", ""]])
    written.append(_replace(_dest(root, f"{info}/RECORD"), out.getvalue().encode("utf-8")))
    return written


def _replace(path: str, data: bytes) -> str:
    """A file of the .dist-info as pip writes it: a temporary file beside it (`<name>` + 8 characters + `.tmp`,
    the name a recovery knows for pip's), renamed over it, so it is never seen half-written."""
    _absent(path)
    tmp = f"{path}{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def targets(wheel: Path, root: str) -> list[str]:
    """Every path `install` writes besides byte-code: the members, and INSTALLER, REQUESTED and RECORD."""
    meta = wheel_metadata(wheel)
    info = meta["dist_info"]
    extra = [f"{info}/{name}" for name in ("INSTALLER", "REQUESTED", "RECORD")]
    return [_dest(os.path.normpath(root), m) for m in dict.fromkeys([*meta["members"], *extra])]
