"""File-level state of an environment: manifests, backups, and restoring byte for byte.

A *manifest* lists every entry under the install roots (site-packages recursively, the
scripts directory flat) with type, mode, size, mtime and inode. Before a fix changes
anything it saves one, and backs up every file the fix may replace or remove: the whole
top-level trees named in the affected distributions' RECORD (pip removes RECORD files and
their __pycache__ twins; taking the whole tree also covers files RECORD forgot) and
whatever a new wheel would overwrite. Backups are hard links where the filesystem allows
(pip unlinks before it writes, so a link keeps the old bytes at no cost), copies otherwise.

Rolling back an interrupted or failed transaction is envdoctor.fix.recover's (only what the
transaction wrote); undoing a committed one is `undo_to` here.
"""

from __future__ import annotations

import errno
import hashlib
import ntpath
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from envdoctor.fix import holders

# path -> [type "f"|"d"|"l", mode, size, mtime_ns, inode, symlink target or ""]
Manifest = dict[str, list]


@dataclass(frozen=True)
class Roots:
    recursive: tuple[str, ...]  # site-packages directories
    flat: tuple[str, ...] = ()  # the scripts directory: only its direct entries
    extra: tuple[str, ...] = ()  # single paths elsewhere that a wheel writes (data files, headers)
    exclude: tuple[str, ...] = ()  # our own state directory, if it lies under a root

    def to_dict(self) -> dict[str, list[str]]:
        return {"recursive": list(self.recursive), "flat": list(self.flat), "extra": list(self.extra),
                "exclude": list(self.exclude)}

    @classmethod
    def from_dict(cls, d: dict[str, list[str]]) -> "Roots":
        return cls(tuple(d.get("recursive", ())), tuple(d.get("flat", ())), tuple(d.get("extra", ())),
                   tuple(d.get("exclude", ())))


def _entry(path: str, st: os.stat_result) -> list:
    if stat.S_ISLNK(st.st_mode):
        return ["l", stat.S_IMODE(st.st_mode), 0, 0, st.st_ino, os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        return ["d", stat.S_IMODE(st.st_mode), 0, 0, st.st_ino, ""]
    return ["f", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino, ""]


def entry_of(path: str) -> Optional[list]:
    try:
        return _entry(path, os.lstat(path))
    except FileNotFoundError:
        return None


def _walk(top: str, excluded: tuple[str, ...], out: Manifest) -> None:
    """Every entry under `top` (not following symlinked dirs, which are recorded as links), with the stat
    os.scandir already made: the manifest of a site-packages with torch is ~30,000 entries, twice a fix."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:  # vanished or unreadable since it was listed: as os.walk, skip it
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                    entry = _entry(e.path, st)
                except FileNotFoundError:  # removed since listed (as entry_of)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if e.path in excluded:  # not recorded, not entered (the state directory, say)
                        continue
                    stack.append(e.path)
                out[e.path] = entry


def scan(roots: Roots) -> Manifest:
    out: Manifest = {}
    excluded = tuple(os.path.normpath(e) for e in roots.exclude)
    for root in roots.recursive:
        if not os.path.isdir(root):
            continue
        out[root] = entry_of(root)  # type: ignore[assignment]
        _walk(root, excluded, out)
    for root in roots.flat:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            p = os.path.join(root, name)
            e = entry_of(p)
            if e is not None and e[0] != "d":
                out[p] = e
    for p in roots.extra:
        e = entry_of(p)
        if e is not None:
            out[p] = e
    return out


def _same(a: Optional[list], b: Optional[list], inode: bool = False) -> bool:
    """Same file state: type, mode, size, mtime (and inode when asked). Directories: type and mode."""
    if a is None or b is None:
        return a is b
    if a[0] != b[0] or a[1] != b[1]:
        return False
    if a[0] == "l":
        return a[5] == b[5]
    if a[0] == "d":
        return True
    return a[2] == b[2] and a[3] == b[3] and (not inode or a[4] == b[4])


def diff(before: Manifest, after: Manifest) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) paths."""
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    # equal entries (nearly all of ~30,000) are told apart by one list comparison in C; _same only for the rest
    changed = sorted(p for p, a in before.items() if p in after and a != after[p] and not _same(a, after[p]))
    return added, removed, changed


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copy2(src, dst, follow_symlinks=False)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def store_name(path: str, flavour: Any = os.path) -> str:
    r"""The short, drive-free file name a backup of `path` is kept under.

    `flavour` is the path module of the target's OS (ntpath for Windows), so the Windows rules are
    tested here: `C:\X`, `c:\x` and `\\?\C:\X` are one file there and get one name; a name built
    from the path itself would hold a second drive colon (WinError 123) and pass MAX_PATH."""
    key = flavour.normpath(path)
    if flavour is ntpath:
        if key.startswith("\\\\?\\UNC\\"):
            key = "\\\\" + key[8:]
        elif key.startswith("\\\\?\\"):
            key = key[4:]
        key = ntpath.normcase(key)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class Backup:
    """Copies (hard links) of files, each stored under `<dir>/files/<short name>`; the index maps
    every original path to its entry, whose last item is that name."""

    INDEX = "backup.json"

    def __init__(self, directory: Path, flavour: Any = os.path) -> None:
        self.dir = directory
        self.files = directory / "files"
        self.flavour = flavour
        self.index: dict[str, list] = {}

    def stored(self, path: str) -> str:
        """Where the backup of `path` is (or goes)."""
        e = self.index.get(path)
        if e is not None and len(e) == 6:  # an index written before short names: the old layout
            return str(self.files) + os.path.abspath(path)
        name = e[6] if e is not None else store_name(path, self.flavour)
        return self.flavour.join(str(self.dir), "files", name)

    def add(self, path: str) -> None:
        """Back up `path`: a file, a symlink, or a whole directory tree."""
        e = entry_of(path)
        if e is None or path in self.index:
            return
        if e[0] == "d":
            self.index[path] = e  # a directory needs no stored copy: its entry restores it
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames:
                    p = os.path.join(dirpath, name)
                    pe = entry_of(p)
                    if pe is None:
                        continue
                    if pe[0] == "l":  # a symlinked directory: keep the link itself
                        self._add_leaf(p, pe)
                    else:
                        self.index[p] = pe
                for name in filenames:
                    p = os.path.join(dirpath, name)
                    pe = entry_of(p)
                    if pe is not None:
                        self._add_leaf(p, pe)
        else:
            self._add_leaf(path, e)

    def _add_leaf(self, path: str, e: list) -> None:
        if path in self.index:
            return
        name = store_name(path, self.flavour)
        dst = self.flavour.join(str(self.dir), "files", name)
        os.makedirs(self.files, exist_ok=True)
        if os.path.lexists(dst):
            os.unlink(dst)
        if e[0] == "l":
            os.symlink(e[5], dst)
        else:
            _link_or_copy(path, dst)
        self.index[path] = e + [name]

    @classmethod
    def load(cls, directory: Path, index: dict[str, list]) -> "Backup":
        b = cls(directory)
        b.index = index
        return b

    def restore(self, only: Optional[Iterable[str]] = None) -> list[str]:
        """Put every backed-up entry back as it was. Returns paths it could not restore."""
        failed: list[tuple[str, OSError]] = []
        wanted = set(only) if only is not None else None
        # directories first, parents before children
        for path in sorted((p for p, e in self.index.items() if e[0] == "d"), key=len):
            if wanted is not None and path not in wanted:
                continue
            cur = entry_of(path)
            try:
                if cur is not None and cur[0] != "d":
                    _remove(path)
                    cur = None
                if cur is None:
                    os.makedirs(path, exist_ok=True)
                    cur = entry_of(path)
                if cur is not None and cur[1] != self.index[path][1]:  # no write where nothing changed
                    os.chmod(path, self.index[path][1])
            except OSError as exc:
                failed.append((path, exc))
        for path, e in self.index.items():
            if e[0] == "d" or (wanted is not None and path not in wanted):
                continue
            src = self.stored(path)
            cur = entry_of(path)
            if cur is not None and _same(cur, e, inode=True):
                continue
            try:
                if cur is not None:
                    _remove(path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if e[0] == "l":
                    os.symlink(e[5], path)
                else:
                    _link_or_copy(src, path)
                    if stat.S_IMODE(os.lstat(path).st_mode) != e[1]:
                        os.chmod(path, e[1])
            except OSError as exc:
                failed.append((path, exc))
        return holders.explain(failed, self.flavour)  # a file a process holds: which one, what to close


def recreate_dirs(before: Manifest) -> list[str]:
    problems = []
    for path in sorted((p for p, e in before.items() if e[0] == "d"), key=len):
        if not os.path.lexists(path):
            try:
                os.makedirs(path, exist_ok=True)
                os.chmod(path, before[path][1])
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
    return problems


def derived_bytecode(path: str, modules: Iterable[str]) -> bool:
    """`path` is byte-code Python writes later for one of `modules` (paths of .py files; a set or a manifest)."""
    d, name = os.path.split(path)
    if os.path.basename(d) != "__pycache__" or not name.endswith(".pyc"):
        return False
    return os.path.join(os.path.dirname(d), name.split(".", 1)[0] + ".py") in modules


def drift(before: Manifest, after: Manifest, backup: Backup) -> list[str]:
    """What changed in the environment since `after` (a committed fix), among the paths an undo touches:
    the paths it wrote, and anything new inside a directory it created (undo removes that directory)."""
    out = []
    added = set(after) - set(before)
    for p in added:
        if not _same(entry_of(p), after[p]):
            out.append(p)
    for top in sorted(p for p in added if after[p][0] == "d" and os.path.dirname(p) not in added):
        if os.path.isdir(top) and not os.path.islink(top):
            # byte-code Python wrote since for the fix's modules (and its __pycache__ directories) is not drift
            out += [p for p in scan(Roots((top,))) if p not in after and not derived_bytecode(p, after)
                    and not (os.path.basename(p) == "__pycache__" and os.path.dirname(p) in after)]
    for p in backup.index:
        expect = after.get(p)
        cur = entry_of(p)
        if not _same(cur, expect):
            out.append(p)
    return sorted(set(out))


def undo_to(before: Manifest, after: Manifest, roots: Roots, backup: Backup) -> list[str]:
    """Revert a committed fix: remove what it added, put back what it replaced or removed."""
    failed: list[tuple[str, OSError]] = []
    added = sorted(set(after) - set(before), key=lambda p: p.count(os.sep), reverse=True)
    added_dirs = {p for p in added if after[p][0] == "d"}
    for p in added:
        try:
            _remove(p)  # a directory the fix created: drift() refused the undo if anything but byte-code appeared in it
        except OSError as exc:
            failed.append((p, exc))
    # byte-code that Python wrote later for modules the fix added, outside directories it created
    for p in added:
        if p.endswith(".py"):
            d, name = os.path.split(p)
            cache = os.path.join(d, "__pycache__")
            if cache in added_dirs or not os.path.isdir(cache):
                continue
            stem = name[:-3] + "."
            for f in os.listdir(cache):
                fp = os.path.join(cache, f)
                if f.startswith(stem) and f.endswith(".pyc") and fp not in before:
                    try:
                        os.unlink(fp)
                    except OSError as exc:
                        failed.append((fp, exc))
    problems = holders.explain(failed)
    problems += recreate_dirs({p: e for p, e in before.items() if p in backup.index})
    problems += backup.restore()
    for p in backup.index:
        if not _same(entry_of(p), before.get(p)):
            problems.append(f"{p}: differs after undo")
    for p in added:
        if os.path.lexists(p):
            problems.append(f"{p}: still present after undo")
    return problems
