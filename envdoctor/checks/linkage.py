"""Why an extension does not load, from the analysis of its file (components.*.facts.binary).

The analysis (envdoctor/binary) is done by the probe; these checks only read it and say
what it means: a missing library, symbols the installed torch does not export (built for
another torch, or the other C++ ABI), built for another CUDA, a libstdc++/glibc too old,
or a file that is not a loadable binary at all.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import torch_choice, torch_fix
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

EVIDENCE = ("components.*.facts.binary",)

MISSING_LIBRARY = Rule(
    id="ED701", name="extension-missing-library", severity="error", component="*",
    summary="A compiled extension needs a shared library (DLL) that the loader cannot find.",
    rationale="The loader's message names only the first library it missed (Linux) or none at all (Windows: "
    "`DLL load failed ... The specified module could not be found`, error 126). envdoctor reads the extension's "
    "DT_NEEDED entries (ELF) or import table (PE) and resolves each one the way the loader does: libraries already "
    "loaded by `import torch` (torch/lib), RPATH, LD_LIBRARY_PATH, RUNPATH, ld.so.cache and the default "
    "directories on Linux; the module's directory, os.add_dll_directory directories (torch\\lib) and System32 on "
    "Windows. `ldd` alone reports torch's libc10.so as 'not found' for every torch extension; this check does not.",
    evidence=EVIDENCE,
    fixes=("Install the package that provides the library, or reinstall the extension's package so that it matches "
           "what is installed.", "For a library outside the standard directories: add its directory to "
           "LD_LIBRARY_PATH (Linux) or os.add_dll_directory (Windows)."),
)
UNDEFINED_SYMBOLS = Rule(
    id="ED702", name="extension-undefined-symbols", severity="error", component="*",
    summary="A compiled extension imports symbols that no loaded library exports: built for another torch "
    "(or for the other C++ ABI).",
    rationale="`undefined symbol: _ZN3c10...` (Linux) or `The specified procedure could not be found` (Windows, "
    "error 127) means the extension was compiled against a different build of the libraries it uses. The loader "
    "names only the first symbol; envdoctor lists all of them, demangled, and tells which library family they "
    "belong to. Symbols with `std::__cxx11` in their names come from a build with the C++11 string ABI; a torch "
    "built with the old ABI (torch._C._GLIBCXX_USE_CXX11_ABI == False, e.g. the PyPI wheels before 2.7) cannot "
    "provide them. Versions alone do not decide: an extension built for torch 2.13 may load fine in 2.14.",
    evidence=EVIDENCE + ("components.torch.facts.runtime.cxx11_abi", "packages.*.direct_url"),
    fixes=("Install the build of the extension made for the installed torch (envdoctor fix chooses it).",
           "Or rebuild it against the installed torch, bypassing pip's wheel cache: "
           "`pip install --no-cache-dir --no-build-isolation --force-reinstall PACKAGE==VERSION`."),
)
CUDA_MISMATCH = Rule(
    id="ED703", name="extension-built-for-other-cuda", severity="error", component="*",
    summary="A compiled extension needs a CUDA library version (or a CUDA build of torch) that is not installed.",
    rationale="Extensions link the CUDA runtime by its major version (libcudart.so.12, cudart64_12.dll) and a "
    "CUDA torch's libc10_cuda / libtorch_cuda. When the environment has another CUDA major, or a CPU-only torch, "
    "the library is missing and the extension was built for another CUDA.",
    evidence=EVIDENCE + ("components.torch.facts.version_py.cuda",),
    fixes=("Install the extension built for the installed torch and its CUDA version (envdoctor fix chooses it).",
           "Or install the torch CUDA variant the extension was built for."),
)
VERSION_TOO_OLD = Rule(
    id="ED704", name="extension-symbol-version-missing", severity="error", component="*",
    summary="A compiled extension (or a library it needs) requires a GLIBCXX / CXXABI / GLIBC version that the "
    "installed libstdc++ or glibc does not provide.",
    rationale="ELF symbol versioning: the binary records which versions it needs from each library "
    "(`version 'GLIBCXX_3.4.30' not found`). A libstdc++ older than the compiler used for the build, often the "
    "system's one found before conda's, or a glibc older than the build machine's, cannot load it.",
    evidence=EVIDENCE + ("host.glibc", "host.glibcxx"),
    fixes=("GLIBCXX/CXXABI: use a newer libstdc++ (conda: `conda install -c conda-forge libstdcxx-ng`; or make the "
           "newer one found first).", "GLIBC: install a build made for an older glibc (a manylinux wheel), or use "
           "a newer OS or container."),
)
NOT_A_BINARY = Rule(
    id="ED705", name="extension-file-broken", severity="error", component="*",
    summary="The extension file is not a loadable binary: a Git LFS pointer, truncated, empty, text, or built for "
    "another platform or architecture.",
    rationale="`invalid ELF header`, `file too short` or `%1 is not a valid Win32 application` say nothing about "
    "why. Common causes: a repository cloned without git-lfs (the .so is a 130-byte pointer file), an interrupted "
    "download or copy, a Windows .pyd in a Linux environment.",
    evidence=EVIDENCE,
    fixes=("Git LFS pointer: `git lfs install && git lfs pull` in the repository.",
           "Otherwise reinstall the package: "
           "`pip install --force-reinstall --no-cache-dir --no-deps PACKAGE==VERSION`."),
)
NO_INIT = Rule(
    id="ED706", name="extension-no-init-function", severity="error", component="*",
    summary="A file named like a Python extension module exports no PyInit_<name> for that name.",
    rationale="CPython imports `name.cpython-311-....so` / `name.pyd` by calling PyInit_<name>; a renamed file or a "
    "plain shared library gives `dynamic module does not define module export function`.",
    evidence=EVIDENCE,
    fixes=("Reinstall the package; do not rename compiled extension modules.",),
)


def analyses(report: Report) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, analysis) once per analysed file."""
    seen: set[Any] = set()
    for name, comp in report.components.items():
        b = comp.facts.get("binary")
        if not isinstance(b, dict) or b.get("path") in seen:
            continue
        seen.add(b.get("path"))
        yield name, b


def _base(path: Optional[str]) -> str:
    return re.split(r"[\\/]", path or "?")[-1]


def _torch_version(report: Report, b: dict[str, Any]) -> Optional[str]:
    t = report.components.get("torch")
    if t is not None and t.installed and t.version:
        return t.version
    return (b.get("torch") or {}).get("version")


def _torch_cxx11(report: Report, b: dict[str, Any]) -> Optional[bool]:
    t = report.components.get("torch")
    rt = (t.facts.get("runtime") or {}) if t is not None else {}
    if isinstance(rt.get("cxx11_abi"), bool):
        return rt["cxx11_abi"]
    v = (b.get("torch") or {}).get("cxx11_abi")
    return v if isinstance(v, bool) else None


def _package(report: Report, comp: str) -> tuple[Optional[str], Optional[str]]:
    """(distribution, version) that ships the component; None for a loose file (`inspect` outside site-packages)."""
    c = report.components.get(comp) or report.components.get(comp.split(".")[0])
    if c is None:
        return (comp.split(".")[0] if "." in comp else None), None
    return (c.distribution or (comp.split(".")[0] if "." in comp else None)), c.version


def _reinstall(report: Report, comp: str, b: dict[str, Any], strategy: Optional[str] = "wheel",
               same_build: bool = False) -> Fix:
    """The fix for an extension that does not match: the matching build, or the same one again (broken file)."""
    dist, ver = _package(report, comp)
    if dist is None:
        return Fix("Reinstall (or rebuild) the package that ships this file, for the installed torch",
                   strategy=strategy)
    ver = ver.split("+")[0] if ver else ver  # a local tag (+cu130) is not on the index under that name
    spec = f"{dist}=={ver}" if ver else dist
    if same_build:
        return Fix(f"Reinstall {dist}", [f"pip install --force-reinstall --no-cache-dir --no-deps {spec}"],
                   strategy=strategy)
    tver = _torch_version(report, b)
    if dist.startswith("torchvision"):
        return Fix(f"Install the torchvision release that pairs with the installed torch {tver or ''}, from the "
                   "index of torch's CUDA variant (`envdoctor fix` chooses it)".replace("  ", " "), strategy="wheel")
    # mmcv and other source-built extensions: the official wheel for this torch, or a fresh local build
    # (--no-cache-dir: pip's wheel cache keys a local build by the sdist URL only, not by torch)
    return Fix(f"Install {dist} built for the installed torch {tver or ''} (`envdoctor fix` chooses the wheel), or "
               "rebuild it against this torch".replace("  ", " "),
               [f"pip install --force-reinstall --no-cache-dir --no-deps --no-build-isolation {spec}"],
               strategy=strategy)


def built_for(report: Report, comp: str, b: dict[str, Any]) -> dict[str, Any]:
    """What the file and its package say about the torch it was built against."""
    out: dict[str, Any] = {}
    dist, _ = _package(report, comp)
    pkg = report.packages.get(dist.lower().replace("_", "-")) if dist else None
    url = ((pkg.direct_url or {}).get("url") if pkg else None)
    if url:
        out["installed_from"] = url
    build = b.get("build") or {}
    for key in ("torch_versions_in_paths", "pybind11_internals", "torch_include", "compiler", "cuda_paths"):
        if build.get(key):
            out[key] = build[key][:2] if isinstance(build[key], list) else build[key]
    torch_pyb = (b.get("torch") or {}).get("pybind11_internals")
    if torch_pyb:
        out["torch_pybind11_internals"] = torch_pyb
    return out


def _symbols(b: dict[str, Any], n: int = 5) -> list[str]:
    out = []
    for s in (b.get("missing_symbols") or [])[:n]:
        d, raw = s.get("demangled") or s["name"], s["name"]
        where = f" from {s['dll']}" if s.get("dll") else ""
        out.append(f"{d}{where}" + (f"  [{raw}]" if d != raw else ""))
    return out


@check(NOT_A_BINARY)
def file_broken(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        p = b.get("problem")
        if not p:
            continue
        kind = p.get("kind")
        fixes = []
        if kind == "lfs_pointer":
            fixes.append(Fix("Fetch the real file with Git LFS in the repository it came from",
                             ["git lfs install", "git lfs pull"]))
        fixes.append(_reinstall(report, comp, b, strategy=None, same_build=True))
        yield finding(NOT_A_BINARY, f"`{_base(b.get('path'))}` is not a loadable binary: {p.get('detail')}",
                      detail=f"{comp} cannot import its compiled extension {b.get('path')}.",
                      evidence={"path": b.get("path"), "size": b.get("size"), "format": b.get("format"),
                                "problem": kind},
                      fixes=fixes, component=comp)


def _split_missing(b: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    from envdoctor.binary import CUDA_LIB, TORCH_CUDA_LIB

    cuda, torch_cuda, other = [], [], []
    for m in b.get("missing_libraries") or []:
        if TORCH_CUDA_LIB.match(m["name"]):
            torch_cuda.append(m)
        elif CUDA_LIB.match(m["name"]):
            cuda.append(m)
        else:
            other.append(m)
    return cuda, torch_cuda, other


@check(MISSING_LIBRARY)
def missing_library(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        if b.get("problem"):
            continue
        _cuda, _tcuda, other = _split_missing(b)
        if not other:
            continue
        names = list(dict.fromkeys(m["name"] for m in other))
        by = "; ".join(f"{m['name']} (needed by {m['needed_by']})" for m in other[:5])
        torch_core = [n for n in names if re.match(r"^(lib)?(c10|torch|torch_cpu|torch_python|shm)\.(so|dll)$", n)]
        detail = f"The loader would not find: {by}."
        fixes = []
        if torch_core and not _torch_version(report, b):
            detail += " These are torch's own libraries and torch is not installed (or not found) here."
            fixes.append(torch_fix(torch_choice(report, None, comp, "", None, f"{_base(b.get('path'))} links "
                                                "torch's own libraries"),
                                   "Install torch (the version the extension was built for)"))
        else:
            searched = b.get("searched") or {}
            dirs = [d for key in ("rpath", "ld_library_path", "runpath", "search_dirs", "dll_directories")
                    for d in (searched.get(key) or [])]
            if dirs:
                detail += " Searched: " + ", ".join(dirs[:6]) + (" and the system directories" if searched.get(
                    "system") or searched.get("system32") else "") + "."
            fixes.append(Fix("Install the package that ships the library, or add its directory to the search path "
                             "(LD_LIBRARY_PATH on Linux, os.add_dll_directory on Windows)"))
            fixes.append(_reinstall(report, comp, b))
        win = " (Windows error 126)" if b.get("format") == "pe" else ""
        yield finding(MISSING_LIBRARY,
                      f"`{_base(b.get('path'))}` needs {', '.join(names[:4])}"
                      + (f" and {len(names) - 4} more" if len(names) > 4 else "") + f", which cannot be found{win}",
                      detail=detail,
                      evidence={"path": b.get("path"), "missing_libraries": names[:20],
                                "missing_libraries_count": b.get("missing_libraries_count")},
                      fixes=fixes, component=comp)


@check(CUDA_MISMATCH)
def cuda_mismatch(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        if b.get("problem"):
            continue
        cuda, tcuda, _other = _split_missing(b)
        if not cuda and not tcuda:
            continue
        from envdoctor.binary import CUDA_LIB

        tver = _torch_version(report, b)
        tcuda_ver = (b.get("torch") or {}).get("cuda")
        t = report.components.get("torch")
        if t is not None and t.facts.get("version_py", {}).get("cuda"):
            tcuda_ver = t.facts["version_py"]["cuda"]
        parts = []
        if tcuda:
            names = ", ".join(dict.fromkeys(m["name"] for m in tcuda))
            if tver and not tcuda_ver:
                parts.append(f"needs {names}: it was built for a CUDA build of torch; the installed torch {tver} "
                             "is CPU-only")
            else:
                parts.append(f"needs {names}, which the installed torch {tver or '(not found)'} does not have")
        present = b.get("cuda_libraries_present") or {}
        for m in cuda:
            cm = CUDA_LIB.match(m["name"])
            if cm is None:  # the caller selected these names with CUDA_LIB; keep mypy sure of it
                continue
            fam, major = cm.group(1), cm.group(2)
            have = present.get(fam) or []
            msg = f"needs {m['name']} (CUDA {major}" if fam == "cudart" else f"needs {m['name']} ({fam} {major}"
            msg += ")" + (f"; present: {', '.join(have[:4])}" if have else "; no version of it is present")
            parts.append(msg)
        if tcuda_ver:
            parts.append(f"torch {tver} uses CUDA {tcuda_ver}")
        missing = [m["name"] for m in cuda + tcuda]
        yield finding(CUDA_MISMATCH, f"`{_base(b.get('path'))}` was built for another CUDA than the installed torch"
                      + (f" {tver}" if tver else ""),
                      detail="; ".join(parts) + ".",
                      evidence={k: v for k, v in {"path": b.get("path"), "missing_libraries": missing[:20],
                                                  "torch": tver, "torch_cuda": tcuda_ver,
                                                  "present": present}.items() if v},
                      fixes=[_reinstall(report, comp, b)], component=comp)


@check(UNDEFINED_SYMBOLS)
def undefined_symbols(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        n = b.get("missing_symbols_count") or 0
        # with a library missing the loader stops there, and its symbols are missing as a consequence
        if b.get("problem") or not n or b.get("missing_libraries_count"):
            continue
        name = _base(b.get("path"))
        n_torch = b.get("missing_torch_symbols_count") or 0
        tver = _torch_version(report, b)
        torch_abi = _torch_cxx11(report, b)
        syms = b.get("missing_symbols") or []
        cxx11_missing = sum(1 for s in syms if "__cxx11" in s["name"] or "B5cxx11" in s["name"])
        pe = b.get("format") == "pe"
        hints = built_for(report, comp, b)
        ev: dict[str, Any] = {"path": b.get("path"), "missing_symbols_count": n, "missing_torch_symbols": n_torch,
                              "symbols": _symbols(b, 20), "torch": tver}
        if torch_abi is not None:
            ev["torch_cxx11_abi"] = torch_abi
        ev.update(hints)
        if cxx11_missing and torch_abi is False:
            title = (f"`{name}` was built against a torch with the C++11 ABI; the installed torch {tver or ''} "
                     f"uses the old ABI: {n} symbol(s) missing").replace("  ", " ")
        elif n_torch and torch_abi is True and b.get("old_abi_string_symbols") and not cxx11_missing:
            title = (f"`{name}` was built against a torch with the old (pre-C++11) ABI; the installed torch "
                     f"{tver or ''} uses the C++11 ABI: {n} symbol(s) missing").replace("  ", " ")
        elif n_torch:
            title = (f"`{name}` was built for another torch: {n_torch} symbol(s) it imports from torch are not "
                     f"exported by the installed torch {tver or ''}").rstrip()
        else:
            title = f"`{name}` needs {n} symbol(s) that none of its libraries provides"
        first = syms[0] if syms else {}
        detail_lines = []
        if pe and first:
            detail_lines.append(f"imports `{first['name']}` from {first.get('dll')}, which does not export it "
                                "(Windows error 127: the procedure could not be found)")
        detail_lines += ["missing: " + s for s in _symbols(b, 5)]
        if n > 5:
            detail_lines.append(f"... {n - 5} more (see --format json)")
        told = [f"{k}: {v}" for k, v in hints.items() if k in ("installed_from", "torch_versions_in_paths")]
        if hints.get("pybind11_internals") and hints.get("torch_pybind11_internals") and \
                hints["pybind11_internals"] != hints["torch_pybind11_internals"]:
            told.append(f"pybind11 ABI id {hints['pybind11_internals']} vs the installed torch's "
                        f"{hints['torch_pybind11_internals']}")
        if told:
            detail_lines.append("built for: " + "; ".join(told))
        fixes = [_reinstall(report, comp, b)] if n_torch else [
            Fix("A library it links against was replaced by an incompatible version: reinstall the package that "
                "ships the extension, or the library's package"),
            _reinstall(report, comp, b, strategy=None, same_build=True)]
        yield finding(UNDEFINED_SYMBOLS, title, detail="\n".join(detail_lines), evidence=ev, fixes=fixes,
                      component=comp)


@check(VERSION_TOO_OLD)
def version_too_old(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        mv = b.get("missing_versions") or []
        if b.get("problem") or not mv:
            continue
        first = mv[0]
        fam = first["version"].split("_")[0]
        have = f" (it provides up to {first['newest']})" if first.get("newest") else ""
        fixes = []
        if fam in ("GLIBCXX", "CXXABI"):
            fixes.append(Fix("Use a newer libstdc++ than " + first["library_path"] + ": in a conda env install "
                             "conda-forge's, or upgrade the system's gcc runtime",
                             ["conda install -c conda-forge 'libstdcxx-ng>=12'"]))
        elif fam == "GLIBC":
            fixes.append(Fix("The system's glibc is older than the build's: install a wheel built for an older "
                             "glibc (manylinux), or use a newer OS / container"))
        fixes.append(_reinstall(report, comp, b, strategy=None))
        vs = ", ".join(dict.fromkeys(m["version"] for m in mv[:6]))
        yield finding(VERSION_TOO_OLD,
                      f"`{first['required_by']}` needs {vs} from {first['library']}, which "
                      f"{first['library_path']} does not provide{have}",
                      detail=f"`{_base(b.get('path'))}` cannot load: the loader would say "
                             f"\"version `{first['version']}' not found (required by {first['required_by']})\".",
                      evidence={"path": b.get("path"), "missing_versions": mv[:20],
                                "count": b.get("missing_versions_count")},
                      fixes=fixes, component=comp)


@check(NO_INIT)
def no_init(report: Report, tables: Tables) -> Iterable[Finding]:
    for comp, b in analyses(report):
        base = _base(b.get("path"))
        if b.get("problem") or not (".cpython-" in base or ".abi3." in base or base.lower().endswith(".pyd")):
            continue
        mod = base.split(".")[0]
        inits = b.get("init_functions") or []
        if f"PyInit_{mod}" in inits:
            continue
        yield finding(NO_INIT, f"`{base}` exports no PyInit_{mod}"
                      + (f" (it has {', '.join(inits)}): the file was renamed" if inits
                         else ": it is not a Python extension module"),
                      evidence={"path": b.get("path"), "init_functions": inits},
                      fixes=[_reinstall(report, comp, b, strategy=None, same_build=True)], component=comp)
