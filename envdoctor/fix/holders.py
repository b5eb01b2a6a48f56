"""Which running processes hold a file, for the message when a file cannot be removed or replaced.

On Windows a loaded `.pyd`/`.dll` (a Jupyter kernel or an IDE that imported mmcv) cannot be deleted
or replaced, and neither can a file another process opened without delete sharing: WinError 5 or 32,
which Python maps to errno EACCES. A rollback or undo that meets one must say which process holds
it and what to close, not "permission denied". psutil reads open files and mapped images on Windows
and Linux alike, so the lookup runs (and is tested) here; only the refusal itself is Windows'.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

# errno values a file held by another process shows up as (Windows: sharing violation / access
# denied -> EACCES; POSIX: a busy mount point or a running executable)
_MAYBE_HELD = (errno.EACCES, errno.EPERM, errno.EBUSY, errno.ETXTBSY)
_WIN_HELD = (5, 32, 33)  # access denied, sharing violation, lock violation


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str
    how: str  # "loaded" (mapped into the process) or "open"

    def text(self) -> str:
        return f"{self.name} (pid {self.pid}, {self.how})"


def _key(path: str, flavour: Any) -> str:
    return flavour.normcase(flavour.normpath(path))


def holders(paths: Iterable[str], flavour: Any = os.path) -> dict[str, list[Holder]]:
    """Every running process (but this one) that has one of `paths` open or mapped. One pass over
    the processes; those psutil may not read (another user's) are skipped."""
    import psutil

    want = {_key(p, flavour): p for p in paths}
    out: dict[str, list[Holder]] = {}
    if not want:
        return out
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] == me:
            continue
        seen: set[str] = set()
        for how, reader in (("loaded", proc.memory_maps), ("open", proc.open_files)):
            try:
                found = [m.path for m in reader()]
            except (psutil.Error, OSError, NotImplementedError):
                continue
            for f in found:
                k = _key(f, flavour)
                if k in want and k not in seen:
                    seen.add(k)
                    out.setdefault(want[k], []).append(Holder(proc.info["pid"], proc.info["name"] or "?", how))
    return out


def may_be_held(exc: OSError) -> bool:
    return getattr(exc, "winerror", None) in _WIN_HELD or exc.errno in _MAYBE_HELD


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def explain(failures: list[tuple[str, OSError]], flavour: Any = os.path,
            reason: Callable[[OSError], str] = _strerror) -> list[str]:
    """`path: reason` for each failed removal/replacement; a path a process holds names that process
    and what to do about it."""
    held = holders([p for p, exc in failures if may_be_held(exc)], flavour)
    out = []
    for path, exc in failures:
        who = held.get(path)
        if who:
            names = ", ".join(h.text() for h in who[:3]) + (", …" if len(who) > 3 else "")
            out.append(f"{path}: in use by {names}; close it (a Python, Jupyter kernel or IDE that imported "
                       "it) and run the command again")
        else:
            out.append(f"{path}: {reason(exc)}")
    return out
