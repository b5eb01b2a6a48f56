"""ELF: which libraries an extension needs, where the loader finds them, which symbols and
symbol versions nothing provides.

Resolution follows ld.so(8): a library already loaded into the process (after
``import torch``: torch's own libraries, matched by SONAME) wins; then the needing
object's DT_RPATH (only when it has no DT_RUNPATH), LD_LIBRARY_PATH, its DT_RUNPATH,
``/etc/ld.so.cache``, the default directories. ``$ORIGIN``, ``$LIB`` and ``$PLATFORM``
are expanded. A candidate of the wrong class or machine is skipped, as the loader does.

Symbols: CPython imports extensions with RTLD_NOW, so every non-weak undefined symbol of
the extension must be defined by an object in its own dependency tree or in the global
scope (the interpreter and what it loaded with RTLD_GLOBAL). The interpreter's ``Py*`` /
``_Py*`` symbols are never reported: extensions do not link libpython (``ldd -r`` lists
them all, a false positive).
"""

from __future__ import annotations

import glob
import mmap
import os
import re
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.hash import ELFHashSection, GNUHashSection

DEFAULT_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")
MAX_OBJECTS = 300  # closure bound: a CUDA torch pulls in ~60 objects
PY_SYMBOL = re.compile(r"^_?Py")
# std::string of the old libstdc++ ABI is the abbreviation "Ss" where a type starts (by value, K/R/P-qualified,
# or first after the name); the C++11 ABI spells NSt7__cxx1112basic_string... instead
_OLD_STRING = re.compile(r"[EKRP_]Ss(?![a-z])")
# libstdc++/libgcc/TM-clone hooks that are weak or provided by the toolchain's startup files
IGNORED_UNDEFINED = {"__gmon_start__", "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable",
                     "__cxa_finalize", "_Jv_RegisterClasses"}


class ElfReadError(Exception):
    """The file claims to be ELF but cannot be read (truncated or corrupt)."""


@dataclass
class ElfObject:
    path: str
    elfclass: int
    machine: str
    soname: Optional[str] = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    verneed: dict[str, list[str]] = field(default_factory=dict)  # library -> versions required from it
    verdef: list[str] = field(default_factory=list)  # versions this object defines
    _elf: Any = None
    _stream: Optional[IO[bytes]] = None
    _hash: Any = None
    _defined: Optional[set[str]] = None

    def defines(self, name: str) -> bool:
        """Does this object export `name` (defined, global or weak)? Uses the hash table."""
        if self._hash is not None:
            try:
                sym = self._hash.get_symbol(name)
            except Exception:  # a damaged hash table: fall back to the full table
                self._hash = None
            else:
                return sym is not None and sym["st_shndx"] != "SHN_UNDEF" and \
                    sym["st_info"]["bind"] != "STB_LOCAL"
        if self._defined is None:
            self._defined = set()
            dynsym = self._elf.get_section_by_name(".dynsym") if self._elf else None
            if dynsym is not None:
                for sym in dynsym.iter_symbols():
                    if sym["st_shndx"] != "SHN_UNDEF" and sym["st_info"]["bind"] != "STB_LOCAL" and sym.name:
                        self._defined.add(sym.name)
        return name in self._defined

    def undefined(self) -> list[tuple[str, bool]]:
        """(name, weak) of every undefined dynamic symbol."""
        dynsym = self._elf.get_section_by_name(".dynsym")
        out: list[tuple[str, bool]] = []
        if dynsym is None:
            return out
        for sym in dynsym.iter_symbols():
            if sym.name and sym["st_shndx"] == "SHN_UNDEF":
                out.append((sym.name, sym["st_info"]["bind"] == "STB_WEAK"))
        return out

    def exported_names(self, prefix: str) -> list[str]:
        dynsym = self._elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return []
        return [s.name for s in dynsym.iter_symbols()
                if s.name.startswith(prefix) and s["st_shndx"] != "SHN_UNDEF"]

    def section_strings(self, name: str) -> list[str]:
        sec = self._elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return []
        return [s.decode("utf-8", "replace") for s in sec.data().split(b"\0") if s.strip()]

    def dynstr_contains(self, needle: bytes) -> bool:
        sec = self._elf.get_section_by_name(".dynstr")
        return sec is not None and needle in sec.data()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def truncation(path: str) -> Optional[str]:
    """Why an ELF file is cut short, or None: program headers, segments or section headers past its end.

    Read with struct from the raw header: a truncated file is exactly what a full parser chokes on.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
        bits64, endian = head[4] == 2, "<" if head[5] != 2 else ">"
        try:
            if bits64:
                phoff, shoff = struct.unpack_from(endian + "QQ", head, 32)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", head, 54)
            else:
                phoff, shoff = struct.unpack_from(endian + "II", head, 28)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", head, 42)
        except struct.error:
            return f"{size:,} bytes: shorter than an ELF header"
        ends = {"program headers": phoff + phnum * phentsize, "section headers": shoff + shnum * shentsize}
        if ends["program headers"] <= size:
            f.seek(phoff)
            table = f.read(phnum * phentsize)
            for i in range(phnum):
                if bits64:
                    _t, _fl, off, _va, _pa, filesz = struct.unpack_from(endian + "IIQQQQ", table, i * phentsize)
                else:
                    _t, off, _va, _pa, filesz = struct.unpack_from(endian + "IIIII", table, i * phentsize)
                ends["segments"] = max(ends.get("segments", 0), off + filesz)
    what, end = max(ends.items(), key=lambda kv: kv[1])
    if end > size:
        return f"{size:,} bytes, but its {what} extend to {end:,} bytes: the file is cut short"
    return None


def open_object(path: str) -> ElfObject:
    stream = open(path, "rb")
    try:
        elf = ELFFile(stream)
        obj = ElfObject(path=path, elfclass=elf.elfclass, machine=elf["e_machine"], _elf=elf, _stream=stream)
        for sec in elf.iter_sections():
            if sec.name == ".dynamic" or sec["sh_type"] == "SHT_DYNAMIC":
                for tag in sec.iter_tags():  # type: ignore[attr-defined]  # a DynamicSection
                    t = tag.entry.d_tag
                    if t == "DT_NEEDED":
                        obj.needed.append(tag.needed)
                    elif t == "DT_SONAME":
                        obj.soname = tag.soname
                    elif t == "DT_RPATH":
                        obj.rpath += [p for p in tag.rpath.split(":") if p]
                    elif t == "DT_RUNPATH":
                        obj.runpath += [p for p in tag.runpath.split(":") if p]
            elif isinstance(sec, GNUVerNeedSection):
                for verneed, auxes in sec.iter_versions():
                    obj.verneed.setdefault(verneed.name or "", []).extend(a.name for a in auxes)
            elif isinstance(sec, GNUVerDefSection):
                for _verdef, auxes in sec.iter_versions():
                    names = [a.name for a in auxes]
                    if names:
                        obj.verdef.append(names[0])
            elif isinstance(sec, GNUHashSection) or (isinstance(sec, ELFHashSection) and obj._hash is None):
                obj._hash = sec
    except (ELFError, struct.error, ValueError, AttributeError) as exc:
        stream.close()
        raise ElfReadError(str(exc)) from None
    except BaseException:
        stream.close()
        raise
    return obj


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


# --- build forensics -----------------------------------------------------------------------------

_PYBIND = re.compile(rb"__pybind11_internals_v(\d+)_([A-Za-z0-9_]*?)__")
_TORCH_INC = b"/torch/include"
_CUDA_DIR = re.compile(rb"/cuda-(\d+\.\d+)/")
_VERSION_IN_PATH = re.compile(rb"(?:torch|pytorch|libtorch)[-_=]?v?(\d+\.\d+(?:\.\d+)?)")


def pybind11_id(path: str) -> Optional[str]:
    """The pybind11 internals id compiled into a binary (its ABI key: version, compiler, C++ ABI)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            m = _PYBIND.search(mm)
            return m.group(0).decode() if m else None
    except (OSError, ValueError):
        return None


def build_hints(obj: ElfObject, path: str) -> dict[str, Any]:
    """What the binary tells about its build: compiler, pybind11 ABI id, torch include paths, CUDA paths."""
    hints: dict[str, Any] = {}
    comment = obj.section_strings(".comment")
    if comment:
        hints["compiler"] = sorted(set(comment))[:3]
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            m = _PYBIND.search(mm)
            if m:
                hints["pybind11_internals"] = m.group(0).decode()
                # newer pybind11 spell the libstdc++ string ABI out; older ids do not say
                flag = m.group(2)
                hints["pybind11_cxx11_abi"] = True if b"use_cxx11_abi_1" in flag else (
                    False if b"use_cxx11_abi_0" in flag else None)
            incs: list[str] = []
            pos = mm.find(_TORCH_INC)
            while pos >= 0 and len(incs) < 5:
                start = pos
                while start > 0 and 0x21 <= mm[start - 1] <= 0x7E and pos - start < 400:
                    start -= 1
                inc = mm[start:pos + len(_TORCH_INC)].decode("ascii", "replace")
                if inc not in incs:
                    incs.append(inc)
                pos = mm.find(_TORCH_INC, pos + 1)
            if incs:
                hints["torch_include"] = incs
                versions = sorted({v.decode() for i in incs for v in _VERSION_IN_PATH.findall(i.encode())})
                if versions:
                    hints["torch_versions_in_paths"] = versions
            cuda = sorted({m.decode() for m in _CUDA_DIR.findall(mm[:min(len(mm), 1 << 30)])})[:5]
            if cuda:
                hints["cuda_paths"] = cuda
    except (OSError, ValueError):
        pass
    return hints


# --- the analysis --------------------------------------------------------------------------------


def torch_owned(name: str, readable: str) -> bool:
    return readable.startswith(("c10::", "at::", "torch::", "caffe2::", "vtable for c10", "typeinfo for c10")) \
        or name.startswith(("aoti_torch_", "torch_", "THP", "_ZN3c10", "_ZNK3c10", "_ZN2at", "_ZNK2at", "_ZN5torch"))


def version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[._]", v.split("_", 1)[-1]))


def analyse(path: str, resolver: Resolver, global_scope: list[ElfObject], limit: int = 20) -> dict[str, Any]:
    from envdoctor.binary.demangle import demangle_all

    root = resolver.obj(path)
    out: dict[str, Any] = {
        "format": "elf",
        "class": f"ELF{root.elfclass}",
        "machine": root.machine.replace("EM_", "").lower(),
        "soname": root.soname,
        "rpath": root.rpath,
        "runpath": root.runpath,
    }
    objs, edges = resolver.closure(root)
    direct = [e for e in edges if e.needed_by == root.path]
    out["needed"] = [{"name": e.name, "path": e.path, "how": e.how} for e in direct][:40]
    missing = [e for e in edges if e.path is None]
    out["missing_libraries"] = [{"name": e.name, "needed_by": os.path.basename(e.needed_by),
                                 "needed_by_path": e.needed_by} for e in missing][:limit]
    out["missing_libraries_count"] = len(missing)
    out["searched"] = {
        "rpath": [resolver.expand(e, root) for e in root.rpath] if not root.runpath else [],
        "runpath": [resolver.expand(e, root) for e in root.runpath],
        "ld_library_path": resolver.ld_library_path,
        "search_dirs": resolver.search_dirs,
        "torch_lib": resolver.torch_lib,
        "system": resolver.system,
    }

    # undefined symbols of the extension itself vs. everything in its scope
    providers: list[ElfObject] = []
    seen: set[str] = set()
    for o in global_scope + objs[1:]:
        real = os.path.realpath(o.path)
        if real not in seen:
            seen.add(real)
            providers.append(o)
    for e in direct:
        if e.how == "loaded" and e.path:
            try:
                o = resolver.obj(e.path)
            except (ElfReadError, OSError):
                continue
            if os.path.realpath(o.path) not in seen:
                seen.add(os.path.realpath(o.path))
                providers.append(o)
    undefined = [(n, w) for n, w in root.undefined() if not PY_SYMBOL.match(n) and n not in IGNORED_UNDEFINED]
    strong = [n for n, w in undefined if not w]
    out["undefined_count"] = len(strong)
    missing_syms = [n for n in strong if not any(p.defines(n) for p in providers)]
    readable = demangle_all(missing_syms[:200]) if missing_syms else {}
    out["missing_symbols"] = [{"name": n, "demangled": readable.get(n, n),
                               "torch": torch_owned(n, readable.get(n, n))} for n in missing_syms[:limit]]
    out["missing_symbols_count"] = len(missing_syms)
    out["missing_torch_symbols_count"] = sum(torch_owned(n, readable.get(n, n)) for n in missing_syms[:200])
    out["cxx11_symbols"] = sum(1 for n, _ in undefined if "__cxx11" in n or "B5cxx11" in n)
    out["old_abi_string_symbols"] = sum(1 for n, _ in undefined
                                        if "__cxx11" not in n and _OLD_STRING.search(n))

    # symbol versions (GLIBCXX_3.4.30, GLIBC_2.34 ...) required vs. defined by the resolved library
    resolved_for: dict[tuple[str, str], Optional[str]] = {(e.needed_by, e.name): e.path for e in edges}
    missing_versions = []
    for o in objs:
        for lib, versions in o.verneed.items():
            target = resolved_for.get((o.path, lib))
            if not target:
                continue
            try:
                t = resolver.obj(target)
            except (ElfReadError, OSError):
                continue
            have = set(t.verdef)
            if not have:
                continue
            for v in versions:
                if v not in have:
                    family = v.split("_")[0] + "_"
                    newest = max((h for h in have if h.startswith(family)), key=version_key, default=None)
                    missing_versions.append({"version": v, "library": lib, "library_path": target,
                                             "required_by": os.path.basename(o.path), "newest": newest})
    out["missing_versions"] = missing_versions[:limit]
    out["missing_versions_count"] = len(missing_versions)
    out["init_functions"] = root.exported_names("PyInit_")[:5]
    out["build"] = build_hints(root, path)
    return out
