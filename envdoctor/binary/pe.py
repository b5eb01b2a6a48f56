"""PE (Windows .pyd / .dll): imported DLLs and functions, found or not.

Windows reports a DLL that is not found as error 126 (``The specified module could
not be found`` / ``找不到指定的模块``) and a DLL that is found but lacks an imported
function as 127 (``The specified procedure could not be found`` / ``找不到指定的程序``),
both without naming the DLL or the function. Here they are named.

Search order for an extension module (Python >= 3.8 loads it with
LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR): a DLL of that name
already loaded into the process (after ``import torch``: every DLL in ``torch\\lib``), the
module's own directory, the application (python.exe) directory, the directories added
with ``os.add_dll_directory`` (torch adds ``torch\\lib``), System32. PATH is no longer
searched. API sets (``api-ms-win-*``) are resolved by the system. On Linux, analysing a
Windows file, System32 is not available: well-known system DLLs are then assumed present.
"""

from __future__ import annotations

import os
import re
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import pefile

MACHINES = {0x8664: "x86_64", 0x14C: "i386", 0xAA64: "arm64", 0x1C4: "arm"}
MAX_OBJECTS = 200
MAX_NAME = 4096  # MSVC replaces longer decorated names with a hash; nothing exported is longer
# Shipped with Windows (System32); not looked for when System32 is not available.
SYSTEM_DLLS = {
    "kernel32.dll", "kernelbase.dll", "ntdll.dll", "user32.dll", "gdi32.dll", "advapi32.dll", "shell32.dll",
    "ole32.dll", "oleaut32.dll", "ws2_32.dll", "msvcrt.dll", "ucrtbase.dll", "bcrypt.dll", "crypt32.dll",
    "dbghelp.dll", "psapi.dll", "shlwapi.dll", "version.dll", "setupapi.dll", "rpcrt4.dll", "secur32.dll",
    "iphlpapi.dll", "winmm.dll", "imm32.dll", "comctl32.dll", "comdlg32.dll", "userenv.dll", "cfgmgr32.dll",
    "powrprof.dll", "dxgi.dll", "d3d11.dll", "d3d12.dll", "opengl32.dll", "winhttp.dll", "wininet.dll",
    "normaliz.dll", "mswsock.dll", "netapi32.dll", "wldap32.dll", "dwmapi.dll", "uxtheme.dll", "ncrypt.dll",
    "wintrust.dll", "mpr.dll", "winspool.drv", "shcore.dll", "combase.dll", "sechost.dll", "msvcp_win.dll",
    # the NVIDIA driver installs these into System32
    "nvcuda.dll", "nvml.dll",
}
# The Visual C++ runtime: in System32 when the redistributable is installed (python.exe also ships
# vcruntime140.dll beside itself). Missing -> 126 on torch's DLLs.
VC_RUNTIME = re.compile(r"^(vcruntime140(_1)?|msvcp140(_\d+|_atomic_wait|_codecvt_ids)?|concrt140|vcomp140)\.dll$")
PYTHON_DLL = re.compile(r"^python\d*\.dll$")
# a torch-owned function: its qualified name, after MSVC's "public: int __cdecl " prefix if any
TORCH_NAME = re.compile(r"(?:^|[\s*&])(?:c10|at|torch|caffe2)::")


class PeReadError(Exception):
    pass


@dataclass
class PeObject:
    path: str
    machine: str
    imports: dict[str, list[str]] = field(default_factory=dict)  # dll -> function names ("#12" for ordinals)
    delay_imports: list[str] = field(default_factory=list)
    exports: set[str] = field(default_factory=set)
    export_ordinals: set[int] = field(default_factory=set)


def truncation(path: str) -> Optional[str]:
    size = os.path.getsize(path)
    try:
        pe = pefile.PE(path, fast_load=True)
    except pefile.PEFormatError as exc:
        return f"not a valid PE image: {exc}"
    try:
        end = max([s.PointerToRawData + s.SizeOfRawData for s in pe.sections] or [0])
    finally:
        pe.close()
    if end > size:
        return f"{size:,} bytes, but its sections extend to {end:,} bytes: the file is cut short"
    return None


def read(path: str) -> PeObject:
    try:
        pe = pefile.PE(path, fast_load=True)
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"],
        ])
    except (pefile.PEFormatError, OSError, ValueError) as exc:
        raise PeReadError(str(exc)) from None
    try:
        obj = PeObject(path=path, machine=MACHINES.get(pe.FILE_HEADER.Machine, hex(pe.FILE_HEADER.Machine)))
        for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
            dll = entry.dll.decode("ascii", "replace")
            names = obj.imports.setdefault(dll, [])
            for imp in entry.imports:
                names.append(_import_name(pe, imp) if imp.name else f"#{imp.ordinal}")
        for entry in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", []):
            obj.delay_imports.append(entry.dll.decode("ascii", "replace"))
        obj.exports, obj.export_ordinals = exports(pe)
    except (pefile.PEFormatError, struct.error, ValueError) as exc:
        raise PeReadError(str(exc)) from None
    finally:
        pe.close()
    return obj


def _import_name(pe: pefile.PE, imp: Any) -> str:
    """pefile cuts names at 512 characters; torch_python.dll imports MSVC names of up to ~4,000 from
    torch_cpu.dll, which a cut name would never match (a false error 127). Read those whole."""
    name = imp.name
    if len(name) >= pefile.MAX_IMPORT_NAME_LENGTH and getattr(imp, "hint_name_table_rva", None):
        name = pe.get_string_at_rva(imp.hint_name_table_rva + 2, MAX_NAME) or name
    return bytes(name).decode("ascii", "replace")


def exports(pe: pefile.PE) -> tuple[set[str], set[int]]:
    """Exported names and ordinals, read from the export directory's tables.

    pefile stops at 8,192 entries and calls a larger table corrupt; torch_cpu.dll (2.5.1) exports
    58,481 names, so every name past the first few thousand would look missing (a false error 127).
    """
    d = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]]
    if not d.VirtualAddress or d.Size < 40:
        return set(), set()
    head = pe.get_data(d.VirtualAddress, 40)
    if len(head) < 40:
        raise PeReadError("export directory cut short")
    base, n_funcs, n_names, at_funcs, at_names = struct.unpack_from("<IIIII", head, 16)
    if n_funcs > 1 << 20 or n_names > n_funcs:
        raise PeReadError(f"export directory claims {n_funcs:,} functions and {n_names:,} names")
    funcs = struct.unpack(f"<{n_funcs}I", pe.get_data(at_funcs, 4 * n_funcs))
    rvas = struct.unpack(f"<{n_names}I", pe.get_data(at_names, 4 * n_names))
    names = {pe.get_string_at_rva(r, MAX_NAME).decode("ascii", "replace") for r in rvas}
    return names, {base + i for i, f in enumerate(funcs) if f}


@dataclass
class Found:
    name: str
    path: Optional[str]
    # loaded | module_dir | app_dir | dll_directory | system32 | apiset | system | vc_runtime | interpreter | missing
    how: str
    needed_by: str


class PeResolver:
    def __init__(self, module_dir: str, app_dir: Optional[str], dll_dirs: list[str], system_dirs: list[str],
                 loaded: dict[str, str]) -> None:
        self.module_dir = module_dir
        self.app_dir = app_dir
        self.dll_dirs = dll_dirs
        self.system_dirs = system_dirs
        self.loaded = {k.lower(): v for k, v in loaded.items()}
        self._listing: dict[str, dict[str, str]] = {}
        self._objects: dict[str, PeObject] = {}

    def obj(self, path: str) -> PeObject:
        o = self._objects.get(path)
        if o is None:
            o = self._objects[path] = read(path)
        return o

    def _find(self, d: str, name: str) -> Optional[str]:
        """Windows file names are case-insensitive; the analysing file system may not be."""
        listing = self._listing.get(d)
        if listing is None:
            try:
                listing = {n.lower(): os.path.join(d, n) for n in os.listdir(d)}
            except OSError:
                listing = {}
            self._listing[d] = listing
        return listing.get(name.lower())

    def resolve(self, name: str, by: str) -> Found:
        low = name.lower()
        if low.startswith(("api-ms-win-", "ext-ms-")):
            return Found(name, None, "apiset", by)
        if low in self.loaded:
            return Found(name, self.loaded[low], "loaded", by)
        if PYTHON_DLL.match(low):
            return Found(name, None, "interpreter", by)
        tiers = [("module_dir", [self.module_dir])]
        if self.app_dir:
            tiers.append(("app_dir", [self.app_dir]))
        tiers += [("dll_directory", self.dll_dirs), ("system32", self.system_dirs)]
        for how, dirs in tiers:
            for d in dirs:
                p = self._find(d, name)
                if p:
                    return Found(name, p, how, by)
        if not self.system_dirs:
            if low in SYSTEM_DLLS:
                return Found(name, None, "system", by)
            if VC_RUNTIME.match(low):
                return Found(name, None, "vc_runtime", by)
        return Found(name, None, "missing", by)


def analyse(path: str, resolver: PeResolver, limit: int = 20) -> dict[str, Any]:
    from envdoctor.binary.demangle import demangle_all

    root = resolver.obj(path)
    out: dict[str, Any] = {"format": "pe", "class": "PE32+" if root.machine in ("x86_64", "arm64") else "PE32",
                           "machine": root.machine}
    edges: list[Found] = []
    order = [root]
    seen = {path}
    queue = deque([root])
    while queue:
        obj = queue.popleft()
        for dll in obj.imports:
            f = resolver.resolve(dll, obj.path)
            edges.append(f)
            if f.path and f.how != "loaded" and f.path not in seen and len(order) < MAX_OBJECTS:
                seen.add(f.path)
                try:
                    child = resolver.obj(f.path)
                except PeReadError:
                    continue
                order.append(child)
                queue.append(child)
    direct = [e for e in edges if e.needed_by == path]
    out["needed"] = [{"name": e.name, "path": e.path, "how": e.how} for e in direct][:40]
    missing = [e for e in edges if e.how == "missing"]
    out["missing_libraries"] = [{"name": e.name, "needed_by": os.path.basename(e.needed_by),
                                 "needed_by_path": e.needed_by} for e in missing][:limit]
    out["missing_libraries_count"] = len(missing)
    out["delay_imports"] = root.delay_imports[:20]
    out["searched"] = {"module_dir": resolver.module_dir, "app_dir": resolver.app_dir,
                       "dll_directories": resolver.dll_dirs, "system32": resolver.system_dirs,
                       "system_assumed": not resolver.system_dirs}
    # 127: a found DLL that does not export what is imported from it (for every object we could read)
    procs: list[dict[str, Any]] = []
    for e in edges:
        if not e.path:
            continue
        try:
            target = resolver.obj(e.path)
        except PeReadError:
            continue
        importer = resolver.obj(e.needed_by)
        for fn in importer.imports.get(e.name, []):
            ok = (int(fn[1:]) in target.export_ordinals) if fn.startswith("#") and fn[1:].isdigit() \
                else fn in target.exports
            if not ok:
                procs.append({"name": fn, "dll": e.name, "dll_path": e.path,
                              "needed_by": os.path.basename(e.needed_by)})
    readable = demangle_all([p["name"] for p in procs[:200]])
    for p in procs:
        p["demangled"] = readable.get(p["name"], p["name"])
        p["torch"] = _torch_dll(p["dll"]) or bool(TORCH_NAME.search(p["demangled"]))
    out["missing_symbols"] = procs[:limit]
    out["missing_symbols_count"] = len(procs)
    out["missing_torch_symbols_count"] = sum(1 for p in procs if p["torch"])
    out["undefined_count"] = sum(len(v) for v in root.imports.values())
    out["init_functions"] = sorted(n for n in root.exports if n.startswith("PyInit_"))[:5]
    out["missing_versions"] = []
    out["missing_versions_count"] = 0
    out["build"] = {}
    return out


def _torch_dll(name: str) -> bool:
    return bool(re.match(r"^(c10|c10_cuda|torch|torch_cpu|torch_cuda|torch_python|shm|fbgemm|asmjit)\.dll$",
                         name.lower()))
