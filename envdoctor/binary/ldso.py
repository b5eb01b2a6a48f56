"""Where ld.so finds the libraries an ELF object needs, and what loading it brings in.

Resolution follows ld.so(8): a library already loaded into the process (after
``import torch``: torch's own libraries, matched by SONAME) wins; then the needing
object's DT_RPATH (only when it has no DT_RUNPATH), LD_LIBRARY_PATH, its DT_RUNPATH,
``/etc/ld.so.cache``, the default directories. ``$ORIGIN``, ``$LIB`` and ``$PLATFORM``
are expanded. A candidate of the wrong class or machine is skipped, as the loader does.
"""

from __future__ import annotations

import glob
import os
import struct
from collections import deque
from dataclasses import dataclass
from typing import Optional

from envdoctor.binary.elf_object import ElfObject, ElfReadError, open_object

DEFAULT_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")
MAX_OBJECTS = 300  # closure bound: a CUDA torch pulls in ~60 objects


# --- ld.so.cache ---------------------------------------------------------------------------------

_CACHE_NEW = b"glibc-ld.so.cache1.1"


def read_ld_so_cache(path: str = "/etc/ld.so.cache") -> dict[str, list[str]]:
    """soname -> paths from the loader's cache (new format; the old one precedes it in some files)."""
    try:
        data = open(path, "rb").read()
    except OSError:
        return {}
    start = data.find(_CACHE_NEW)
    if start < 0:
        return {}
    try:
        nlibs, len_strings = struct.unpack_from("<II", data, start + 20)
        entries = start + 48  # header: magic(17)+version(3) nlibs len_strings flags(1)+pad(3) ext_off unused[3]
        out: dict[str, list[str]] = {}
        for i in range(nlibs):
            _flags, key, value, _osv, _hwcap = struct.unpack_from("<iIIIQ", data, entries + i * 24)
            # offsets count from the file start in a new-format-only cache, from the new header
            # when an old-format cache precedes it: take the reading that gives a path
            v = _cstr(data, value)
            if start and not v.startswith("/"):
                v, k = _cstr(data, start + value), _cstr(data, start + key)
            else:
                k = _cstr(data, key)
            if k and v:
                out.setdefault(k, []).append(v)
        return out
    except struct.error:
        return {}


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    return data[off:end].decode("utf-8", "replace") if end > off else ""


# --- resolution ----------------------------------------------------------------------------------


@dataclass
class Needed:
    name: str
    path: Optional[str]
    # loaded | rpath | ld_library_path | runpath | search_dir | torch_lib | ld.so.cache | default | path | missing
    how: str
    needed_by: str


class Resolver:
    def __init__(self, ld_library_path: list[str], search_dirs: list[str], torch_lib: Optional[str],
                 system: bool, loaded: dict[str, str]) -> None:
        self.ld_library_path = ld_library_path
        self.search_dirs = search_dirs
        self.torch_lib = torch_lib
        self.system = system
        self.loaded = dict(loaded)  # soname/basename -> path
        self._cache: Optional[dict[str, list[str]]] = None
        self._objects: dict[str, ElfObject] = {}
        self._multiarch = [d for d in glob.glob("/lib/*-linux-gnu*") + glob.glob("/usr/lib/*-linux-gnu*")
                           if os.path.isdir(d)] if system else []

    def obj(self, path: str) -> ElfObject:
        real = os.path.realpath(path)
        o = self._objects.get(real)
        if o is None:
            o = open_object(path)
            self._objects[real] = o
        return o

    def close(self) -> None:
        for o in self._objects.values():
            o.close()
        self._objects.clear()

    def ld_cache(self) -> dict[str, list[str]]:
        if self._cache is None:
            self._cache = read_ld_so_cache() if self.system else {}
        return self._cache

    def _compatible(self, path: str, like: ElfObject) -> bool:
        if not os.path.isfile(path):
            return False
        try:
            o = self.obj(path)
        except (ElfReadError, OSError):
            return False
        return o.elfclass == like.elfclass and o.machine == like.machine

    def expand(self, entry: str, origin: ElfObject) -> str:
        lib = "lib64" if origin.elfclass == 64 else "lib"
        plat = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i686"}.get(origin.machine, "")
        out = entry.replace("${ORIGIN}", "$ORIGIN").replace("${LIB}", "$LIB").replace("${PLATFORM}", "$PLATFORM")
        out = out.replace("$ORIGIN", os.path.dirname(os.path.abspath(origin.path)))
        return out.replace("$LIB", lib).replace("$PLATFORM", plat)

    def resolve(self, name: str, by: ElfObject, rpath_chain: list[ElfObject]) -> Needed:
        if "/" in name:
            p = os.path.normpath(self.expand(name, by))
            return Needed(name, p if self._compatible(p, by) else None, "path" if os.path.exists(p) else "missing",
                          by.path)
        if name in self.loaded:
            return Needed(name, self.loaded[name], "loaded", by.path)
        tiers: list[tuple[str, list[str]]] = []
        if not by.runpath:
            # DT_RPATH of the object, then of the objects that loaded it
            rp = [self.expand(e, o) for o in [by] + rpath_chain if not o.runpath for e in o.rpath]
            tiers.append(("rpath", rp))
        tiers.append(("ld_library_path", self.ld_library_path))
        tiers.append(("runpath", [self.expand(e, by) for e in by.runpath]))
        tiers.append(("search_dir", self.search_dirs))
        if self.torch_lib:
            tiers.append(("torch_lib", [self.torch_lib]))
        for how, dirs in tiers:
            for d in dirs:
                p = os.path.normpath(os.path.join(d, name))
                if self._compatible(p, by):
                    return Needed(name, p, how, by.path)
        if self.system:
            for p in self.ld_cache().get(name, []):
                if self._compatible(p, by):
                    return Needed(name, p, "ld.so.cache", by.path)
            for d in list(DEFAULT_DIRS) + self._multiarch:
                p = os.path.join(d, name)
                if self._compatible(p, by):
                    return Needed(name, p, "default", by.path)
        return Needed(name, None, "missing", by.path)

    def closure(self, root: ElfObject, limit: int = MAX_OBJECTS) -> tuple[list[ElfObject], list[Needed]]:
        """Breadth-first, like the loader: the objects loaded for `root` and every DT_NEEDED edge."""
        seen = {os.path.realpath(root.path)}
        order = [root]
        edges: list[Needed] = []
        queue: deque[tuple[ElfObject, list[ElfObject]]] = deque([(root, [])])
        by_name: dict[str, Optional[str]] = {}
        while queue:
            obj, chain = queue.popleft()
            for name in obj.needed:
                if name in by_name and by_name[name] is not None and name not in self.loaded:
                    # loaded once, then found by its SONAME for every later object
                    edges.append(Needed(name, by_name[name], "loaded", obj.path))
                    continue
                n = self.resolve(name, obj, chain)
                edges.append(n)
                by_name[name] = n.path
                if n.path is None or n.how == "loaded":
                    continue
                real = os.path.realpath(n.path)
                if real in seen or len(order) >= limit:
                    continue
                seen.add(real)
                try:
                    child = self.obj(n.path)
                except (ElfReadError, OSError):
                    continue
                order.append(child)
                queue.append((child, [obj] + chain))
        return order, edges


def loaded_by(resolver: Resolver, roots: list[str]) -> dict[str, str]:
    """soname/basename -> path of everything loading `roots` brings in (e.g. `import torch`)."""
    out: dict[str, str] = {}
    for r in roots:
        try:
            root = resolver.obj(r)
        except (ElfReadError, OSError):
            continue
        objs, _ = resolver.closure(root)
        for o in objs:
            out.setdefault(os.path.basename(o.path), o.path)
            if o.soname:
                out.setdefault(o.soname, o.path)
    return out
