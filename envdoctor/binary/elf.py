"""ELF: why an extension does not load, read from the file: the libraries it needs and where the loader
finds them (ldso.py), which symbols and symbol versions nothing provides, and what its build left behind.

Symbols: CPython imports extensions with RTLD_NOW, so every non-weak undefined symbol of
the extension must be defined by an object in its own dependency tree or in the global
scope (the interpreter and what it loaded with RTLD_GLOBAL). The interpreter's ``Py*`` /
``_Py*`` symbols are never reported: extensions do not link libpython (``ldd -r`` lists
them all, a false positive).
"""

from __future__ import annotations

import mmap
import os
import re
from typing import Any, Optional

from envdoctor.binary.elf_object import ElfObject, ElfReadError
from envdoctor.binary.ldso import Resolver

PY_SYMBOL = re.compile(r"^_?Py")
# std::string of the old libstdc++ ABI is the abbreviation "Ss" where a type starts (by value, K/R/P-qualified,
# or first after the name); the C++11 ABI spells NSt7__cxx1112basic_string... instead
_OLD_STRING = re.compile(r"[EKRP_]Ss(?![a-z])")
# libstdc++/libgcc/TM-clone hooks that are weak or provided by the toolchain's startup files
IGNORED_UNDEFINED = {"__gmon_start__", "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable",
                     "__cxa_finalize", "_Jv_RegisterClasses"}


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
