"""Why a compiled extension does not load, read from the file itself.

``analyse_file(path, ctx)`` returns a bounded, JSON-ready dict: the file's format and
problems (a Git LFS pointer, truncated, not a binary), each needed library and where the
loader finds it, missing libraries, undefined symbols nothing provides (demangled),
missing symbol versions (GLIBCXX_3.4.32 ...), and build hints (compiler, pybind11 ABI
id, torch include paths). It judges nothing: ``checks/linkage.py`` turns it into findings.

``attach_analysis(report)`` runs it, after the load probes, for each component whose
import failed, and stores the result in ``components[name].facts["binary"]``. It reads
files only; it never imports or executes the extension.
"""

from __future__ import annotations

import glob
import ntpath
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from envdoctor.binary import elf as elf_mod
from envdoctor.binary import elf_object, ldso
from envdoctor.binary import pe as pe_mod
from envdoctor.binary import windll
from envdoctor.binary.filetype import sniff
from envdoctor.facts import package_dir_paths

LIMIT = 20  # list entries kept in the report; counts are always complete

# component -> (package whose directory holds the extension, stems of its extension files)
EXTENSIONS = {
    "torch": ("torch", ("_C",)),
    "torchvision": ("torchvision", ("_C",)),
    "torchvision.ops": ("torchvision", ("_C",)),
    "mmcv._ext": ("mmcv", ("_ext",)),
}
COMPILED = (".so", ".pyd", ".dll", ".dylib")
# libcudart.so.12, libcudnn.so.9, cudart64_12.dll, cudnn64_9.dll ...
CUDA_LIB = re.compile(r"^(?:lib)?(cudart|cublas|cublasLt|cudnn|cufft|curand|cusparse|cusolver|nvrtc|nccl|nvJitLink|"
                      r"cupti|nvToolsExt)(?:\.so\.|64_)(\d+)")
TORCH_CUDA_LIB = re.compile(r"^(?:lib)?(c10_cuda|torch_cuda|torch_cuda_cpp|torch_cuda_cu|caffe2_nvrtc)\.(?:so|dll)$")
_PATH_QUOTED = re.compile(r"\"([^\"]+\.(?:so(?:\.\d+)*|pyd|dll))\"", re.I)
_PATH_BARE = re.compile(r"((?:[A-Za-z]:)?[\\/][^\s:\"'<>|]*?\.(?:so(?:\.\d+)*|pyd|dll))(?=$|[\s:,)'\"])", re.I)


@dataclass
class Context:
    """Where the loader would look, and what is already loaded, when the extension is imported."""

    search_dirs: list[str] = field(default_factory=list)  # --search-dir: extra library / DLL directories
    ld_library_path: list[str] = field(default_factory=list)
    torch_dir: Optional[str] = None  # site-packages/torch of the target environment
    preload_torch: bool = True  # False when analysing torch itself
    loaded: list[str] = field(default_factory=list)  # libraries the runtime probe saw loaded after `import torch`
    interpreter: Optional[str] = None
    system: bool = True  # consult ld.so.cache and the default directories (analysing this machine)
    windows_system_dirs: list[str] = field(default_factory=list)  # System32 when analysing on Windows
    host_format: Optional[str] = None  # "elf" / "pe": the format the target platform loads
    host_machine: Optional[str] = None  # "x86_64" ...
    # a Windows target's interpreter facts, in its own path flavour (a report read on Linux), and where
    # its paths can be read here (identity on Windows; a mounted drive otherwise)
    windows: Optional[windll.WindowsPython] = None
    local: Optional[Callable[[str], str]] = None


def torch_info(torch_dir: Optional[str]) -> dict[str, Any]:
    """Version, CUDA and C++ ABI of an installed torch, read from its files (no import)."""
    if not torch_dir or not os.path.isdir(torch_dir):
        return {}
    info: dict[str, Any] = {"dir": torch_dir, "lib_dir": os.path.join(torch_dir, "lib")}
    try:
        text = open(os.path.join(torch_dir, "version.py"), encoding="utf-8").read()
    except OSError:
        text = ""
    for key in ("__version__", "cuda", "git_version"):
        m = re.search(rf"^{key}\s*(?::[^=\n]*)?=\s*['\"]?([^'\"\n]*)['\"]?", text, re.M)
        if m and m.group(1) not in ("None", ""):
            info["version" if key == "__version__" else key] = m.group(1).strip()
    c10 = os.path.join(torch_dir, "lib", "libc10.so")
    if os.path.isfile(c10):
        try:
            o = elf_object.open_object(c10)
            try:
                info["cxx11_abi"] = o.dynstr_contains(b"__cxx11")
            finally:
                o.close()
        except (elf_object.ElfReadError, OSError):
            pass
    for name in ("libtorch_python.so", "torch_python.dll"):
        lib = os.path.join(torch_dir, "lib", name)
        if os.path.isfile(lib):
            pyb = elf_mod.pybind11_id(lib)
            if pyb:
                info["pybind11_internals"] = pyb
    return info


def _problem(out: dict[str, Any], kind: str, detail: str) -> dict[str, Any]:
    out["problem"] = {"kind": kind, "detail": detail}
    out["would_load"] = False
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def analyse_file(path: str, ctx: Optional[Context] = None) -> dict[str, Any]:
    """The bounded analysis of one binary (see the module docstring). Raises OSError if unreadable."""
    ctx = ctx or Context()
    s = sniff(path)
    out: dict[str, Any] = {"path": path, "size": s.size, "format": s.format, "problem": None}
    out.update(s.extra)
    if s.problem:
        return _problem(out, s.problem["kind"], s.problem["detail"])
    if s.format in ("elf", "pe"):
        try:
            why = (elf_object if s.format == "elf" else pe_mod).truncation(path)
            if why:
                return _problem(out, "truncated", why)
            out.update(_analyse_elf(path, ctx) if s.format == "elf" else _analyse_pe(path, ctx))
        except PermissionError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parser failure on a damaged file is that file's finding
            # pyelftools/pefile follow offsets the file states; a damaged header sends them past the end
            # (OSError EINVAL on seek, struct.error, IndexError ...): the loader would refuse it too
            return _problem(out, "damaged", f"a damaged {s.format.upper()} file: {_short(exc)}")
    if ctx.host_format and s.format != ctx.host_format:
        names = {"elf": "Linux (ELF)", "pe": "Windows (PE)"}
        return _problem(out, "wrong_format", f"a {names.get(s.format, s.format)} binary; this platform loads "
                                             f"{names.get(ctx.host_format, ctx.host_format)} files")
    if ctx.host_machine and out.get("machine") and out["machine"] != _norm_machine(ctx.host_machine):
        return _problem(out, "wrong_arch", f"built for {out['machine']}; this machine is {ctx.host_machine}")
    torch = torch_info(ctx.torch_dir)
    if torch:
        out["torch"] = torch
    out["cuda_libraries_present"] = _cuda_present(out, ctx)
    out["would_load"] = not (out.get("missing_libraries_count") or out.get("missing_symbols_count")
                             or out.get("missing_versions_count"))
    return out


def _norm_machine(m: str) -> str:
    m = m.lower()
    return {"amd64": "x86_64", "x86-64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(m, m)


def _analyse_elf(path: str, ctx: Context) -> dict[str, Any]:
    torch_lib = os.path.join(ctx.torch_dir, "lib") if ctx.torch_dir else None
    resolver = ldso.Resolver(ctx.ld_library_path, ctx.search_dirs, None, ctx.system, {})
    try:
        loaded: dict[str, str] = {}
        global_roots: list[str] = []
        if ctx.interpreter and os.path.isfile(ctx.interpreter):
            global_roots.append(ctx.interpreter)
        if ctx.preload_torch and ctx.torch_dir:
            # `import torch` loads torch._C and, with RTLD_GLOBAL, libtorch_global_deps.so
            roots = sorted(glob.glob(os.path.join(ctx.torch_dir, "_C*.so")))
            deps = os.path.join(ctx.torch_dir, "lib", "libtorch_global_deps.so")
            if os.path.isfile(deps):
                roots.append(deps)
                global_roots.append(deps)
            loaded.update(ldso.loaded_by(resolver, roots))
            for p in ctx.loaded:
                if os.path.isfile(p):
                    loaded.setdefault(os.path.basename(p), p)
        global_loaded = ldso.loaded_by(resolver, global_roots)
        resolver.loaded = {**global_loaded, **loaded}
        if ctx.preload_torch:
            resolver.torch_lib = torch_lib if torch_lib and os.path.isdir(torch_lib) else None
        global_scope = []
        for p in dict.fromkeys(global_loaded.values()):
            try:
                global_scope.append(resolver.obj(p))
            except (elf_object.ElfReadError, OSError):
                pass
        return elf_mod.analyse(path, resolver, global_scope, LIMIT)
    finally:
        resolver.close()


def _analyse_pe(path: str, ctx: Context) -> dict[str, Any]:
    local = ctx.local or (lambda p: p)
    win = ctx.windows
    flavour = ntpath if win is not None else os.path
    if win is None:  # inspect on this machine: what the context knows, in this machine's paths
        info = torch_info(ctx.torch_dir)
        win = windll.WindowsPython(executable=ctx.interpreter or "", torch_dir=ctx.torch_dir,
                                   torch_cuda=info.get("cuda"))
    adds = ["torch_lib"]
    if win.torch_dir and ctx.preload_torch:
        try:
            with open(local(flavour.join(win.torch_dir, "__init__.py")), encoding="utf-8", errors="replace") as f:
                adds = windll.torch_adds(f.read())
        except OSError:
            pass  # no readable __init__: torch\lib only (every torch release adds it)
    loaded: dict[str, str] = {}
    dll_dirs = list(ctx.search_dirs)
    if win.torch_dir and ctx.preload_torch:
        torch_lib = local(flavour.join(win.torch_dir, "lib"))
        if os.path.isdir(torch_lib):
            # torch/__init__.py loads every DLL in torch\lib after adding its directories
            for n in os.listdir(torch_lib):
                if n.lower().endswith(".dll"):
                    loaded[n] = os.path.join(torch_lib, n)
        dll_dirs += [local(d) for d in windll.dll_directories(win, adds, local, flavour)]
    for p in ctx.loaded:
        loaded.setdefault(flavour.basename(p), local(p))
    system = list(ctx.windows_system_dirs)
    if not system and sys.platform == "win32":
        root = os.environ.get("SystemRoot", r"C:\Windows")
        system = [os.path.join(root, "System32")]
    app = windll.application_dir(win, flavour) if (win.executable or win.exec_prefix) else None
    resolver = pe_mod.PeResolver(os.path.dirname(os.path.abspath(path)), local(app) if app else None,
                                 list(dict.fromkeys(dll_dirs)), system, loaded)
    try:
        out = pe_mod.analyse(path, resolver, LIMIT)
    except pe_mod.PeReadError as exc:
        return {"problem": {"kind": "truncated", "detail": f"unreadable PE file: {exc}"}}
    out["searched"]["torch_adds"] = adds if win.torch_dir and ctx.preload_torch else []
    return out


def _cuda_present(out: dict[str, Any], ctx: Context) -> dict[str, list[str]]:
    """For each missing CUDA library family (cudart, cudnn ...), the versions that are present."""
    families: dict[str, list[str]] = {}
    for m in out.get("missing_libraries", []):
        cm = CUDA_LIB.match(m["name"])
        if cm:
            families[cm.group(1)] = []
    if not families:
        return {}
    names: set[str] = set()
    dirs = list(ctx.search_dirs) + list(ctx.ld_library_path)
    if ctx.torch_dir:
        site = os.path.dirname(ctx.torch_dir)
        dirs += [os.path.join(ctx.torch_dir, "lib")] + glob.glob(os.path.join(site, "nvidia", "*", "lib"))
        dirs += glob.glob(os.path.join(site, "nvidia", "*", "bin"))
    for e in out.get("needed", []):
        if e.get("path"):
            dirs.append(os.path.dirname(e["path"]))
    for d in dict.fromkeys(dirs):
        try:
            names.update(os.listdir(d))
        except OSError:
            pass
    if ctx.system and out.get("format") == "elf":
        names.update(ldso.read_ld_so_cache().keys())
    for n in names:
        cm = CUDA_LIB.match(n)
        if cm and cm.group(1) in families:
            families[cm.group(1)].append(n)
    return {k: sorted(set(v))[:10] for k, v in families.items()}


# --- the probe hook --------------------------------------------------------------------------------


def paths_in_message(message: str) -> list[str]:
    """Library paths named in a load error that exist on this machine, in order."""
    out: list[str] = []
    for rx in (_PATH_QUOTED, _PATH_BARE):
        for m in rx.finditer(message or ""):
            p = m.group(1)
            if p not in out and os.path.isfile(p):
                out.append(p)
    return out


def _candidates(report: Any, name: str) -> list[str]:
    comp = report.components[name]
    msgs = []
    if comp.load and comp.load.error:
        msgs.append(comp.load.error.message or "")
    if comp.facts.get("loader_error"):
        msgs.append(str(comp.facts["loader_error"]))
    files: list[str] = []
    for msg in msgs:
        files += paths_in_message(msg)
    spec = EXTENSIONS.get(name)
    if spec:
        pkg, stems = spec
        owner = report.components.get(pkg)
        dirs = package_dir_paths(owner) if owner else []
        for d in dirs[:1]:
            names = comp.facts.get("ext_files") or (owner.facts.get("ext_files") if owner else None) or []
            if not names:
                try:
                    names = sorted(os.listdir(d))
                except OSError:
                    names = []
            for stem in stems:
                for n in names:
                    if re.match(re.escape(stem) + r"[._]", n) and n.endswith(COMPILED):
                        files.append(os.path.join(d, n))
    return [f for f in dict.fromkeys(files) if os.path.isfile(f)]


def context_for(report: Any, component: str) -> Context:
    torch = report.components.get("torch")
    torch_dir = None
    if torch is not None and torch.installed:
        dirs = package_dir_paths(torch)
        torch_dir = dirs[0] if dirs else None
    runtime = (torch.facts.get("runtime") or {}) if torch is not None else {}
    raw_libs = runtime.get("libraries")
    libs = raw_libs if isinstance(raw_libs, list) else []
    ldp = report.environment.get("LD_LIBRARY_PATH", "")
    host_os = (report.host.os or "").lower()
    windows = None
    if host_os == "windows":
        py = report.python
        windows = windll.WindowsPython(
            executable=py.executable, exec_prefix=py.prefix, base_exec_prefix=py.base_prefix or py.prefix,
            user_site=py.user_site, torch_dir=torch_dir,  # torch reads userbase even when disabled
            torch_cuda=(torch_info(torch_dir).get("cuda") if torch_dir else None),
            environ={k: v for k, v in report.environment.items()
                     if k.upper().startswith(("CUDA_PATH_V", "NVTOOLSEXT"))})
    return Context(
        ld_library_path=[p for p in ldp.split(os.pathsep) if p],
        torch_dir=torch_dir,
        preload_torch=component != "torch",
        loaded=[str(p) for p in libs],
        interpreter=report.python.executable or None,
        system=host_os != "windows",
        host_format="pe" if host_os == "windows" else ("elf" if host_os == "linux" else None),
        host_machine=report.host.arch or None,
        windows=windows,
    )


def attach_analysis(report: Any) -> None:
    """For each component whose import failed, analyse its extension file into facts["binary"]."""
    done: dict[str, dict[str, Any]] = {}
    for name, comp in report.components.items():
        # a crash too: a truncated library can kill the process (SIGBUS) instead of raising
        if comp.load is None or comp.load.status not in ("import_error", "crash"):
            continue
        if name == "mmcv" and not paths_in_message(comp.load.error.message if comp.load.error else ""):
            continue  # `import mmcv` does not load _ext; mmcv._ext has its own row
        try:
            candidates = _candidates(report, name)
            if not candidates:
                continue
            ctx = context_for(report, name)
            results = []
            for path in candidates[:4]:
                key = f"{name == 'torch'}:{path}"
                if key not in done:
                    done[key] = analyse_file(path, ctx)
                results.append(done[key])
                if not done[key].get("would_load", True):
                    break
            chosen = next((r for r in results if not r.get("would_load", True)), results[0])
            comp.facts["binary"] = chosen
        except Exception as exc:  # forensics are a bonus: never lose the report over them
            report.probe_errors.append(f"binary analysis of {name}: {type(exc).__name__}: {exc}")
