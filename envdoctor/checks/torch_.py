"""ED2xx: torch itself: its import, its build, its copies, its versions."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import pip, torch_choice, torch_fix
from envdoctor.fact_readers import (comp, load_cause, load_message, os_name, python_minor, runtime, torch_cuda,
                                    torch_hip, torch_version)
from envdoctor.facts import FAILED, Finding, Fix, Report
from envdoctor.facts import package_dir_paths

if TYPE_CHECKING:
    from envdoctor.rules import Tables

VC_REDIST = "https://aka.ms/vs/17/release/vc_redist.x64.exe"

IMPORT = Rule(
    id="ED201", name="torch-import-fails", severity="error", component="torch",
    summary="`import torch` fails; the cause is classified from the loader's message.",
    rationale="torch loads dozens of shared libraries (its own, the CUDA runtime from the nvidia-* wheels, the "
    "C++ runtime). The loader names the one that failed: a missing library (Linux 'cannot open shared object "
    "file', Windows error 126), a missing export (undefined symbol, Windows error 127: another copy of a DLL was "
    "loaded first or versions are mixed), or a DLL whose initialisation failed (Windows error 1114: usually an "
    "old Visual C++ runtime). NumPy and glibc causes are reported by ED501/ED502.",
    evidence=("components.torch.load", "components.torch.facts.load_cause"),
    tables=("load_error", "winerror", "win_message", "pytorch_index"),
    fixes=("reinstall torch from the index of its CUDA variant", "a missing CUDA library of the nvidia-* wheels: "
           "install torch's build as it is (not --no-deps), so pip installs what it requires and is missing",
           "install the latest VC++ redistributable (Windows 126/1114)"),
    explains=("torch",),
)

CPU_BUILD = Rule(
    id="ED202", name="torch-cpu-build-with-gpu", severity="warning", component="torch",
    summary="torch is a CPU-only build on a machine with an NVIDIA GPU.",
    rationale="`pip install torch` from download.pytorch.org/whl/cpu (or a +cpu pin) gives a build without CUDA: "
    "torch.cuda.is_available() is False although the GPU and driver work. Install the CUDA variant of the same "
    "version that the driver supports.",
    evidence=("components.torch.facts.version_py.cuda", "gpu.devices", "gpu.cuda_driver_version"),
    tables=("torch_release", "pytorch_index"),
    fixes=("install the +cuXY build of the same torch version",),
)

SHADOWED = Rule(
    id="ED203", name="torch-shadowed", severity="warning", component="torch",
    summary="Two copies of torch are visible on sys.path; the first one (often the user site) shadows the other.",
    rationale="`pip install --user` (or a PYTHONPATH entry) puts a second torch before the environment's own. "
    "pip, the fix and you look at one copy while Python imports the other.",
    evidence=("components.torch.facts.package_dirs", "python.user_site", "python.sys_path"),
    fixes=("remove the shadowing copy, or run with PYTHONNOUSERSITE=1",),
)

VERSION_SKEW = Rule(
    id="ED204", name="torch-version-skew", severity="warning", component="torch",
    summary="The torch pip says is installed differs from the torch that `import torch` loads.",
    rationale="A partial upgrade, a second copy, or files from another install leave the dist-info (what pip and "
    "the wheel choice see) and the imported module (what runs) at different versions.",
    evidence=("packages.torch.version", "components.torch.facts.version_py", "components.torch.facts.runtime"),
    fixes=("reinstall torch so both agree",),
)

PYTHON = Rule(
    id="ED205", name="torch-python-unsupported", severity="warning", component="torch",
    summary="This Python version is outside the range the installed torch release supports.",
    rationale="PyTorch publishes wheels for a range of Pythons per release (RELEASE.md). Outside it you are on a "
    "source build or an experimental wheel, and packages built against that torch (torchvision, mmcv) have no "
    "wheels.",
    evidence=("python.version", "components.torch.version"),
    tables=("torch_release",),
    fixes=("use a Python inside the release's range",),
)


def _reinstall(report: Report, tables: Tables, ver: str, cuda: Any, dependencies: bool = False) -> Fix:
    """torch again from its variant's index; `dependencies`: what it needs that is missing (not its files again)."""
    pub, tag = tables_query.public(ver), tables_query.cuda_tag(cuda)
    choice = torch_choice(report, tables, "torch", ver, cuda, f"torch {pub} ({tag}) from PyTorch's index of {tag}",
                          dependencies=dependencies)
    if dependencies:
        return torch_fix(choice, f"install what torch {pub} ({tag}) requires and is missing (its nvidia-* wheels)")
    return torch_fix(choice, f"reinstall torch {pub} ({tag})")


@check(IMPORT)
def torch_import_fails(report: Report, tables: Tables) -> Iterable[Finding]:
    c = report.components.get("torch")
    if c is None or c.load is None or c.load.status not in FAILED:
        return
    cause = load_cause(report, "torch")
    kind = cause.get("kind", "unknown")
    if kind in ("numpy_abi", "glibcxx", "glibc", "damaged_package"):
        return  # ED501 / ED502 / ED003
    ver = torch_version(report) or "?"
    cuda = torch_cuda(report)
    lib = cause.get("library")
    msg = load_message(report, "torch")
    fixes = [_reinstall(report, tables, ver, cuda)]
    if kind == "missing_library":
        title = f"`import torch` fails: {lib or 'a library it needs'} is not found"
        if os_name(report) == "windows":
            detail = ("Windows error 126: the DLL or one of its dependencies is missing. Usual causes: the Visual "
                      "C++ runtime is missing or old; torch 2.4.0's fbgemm.dll needed libomp140 (fixed in 2.4.1).")
            fixes.insert(0, Fix(description=f"install the latest Visual C++ Redistributable ({VC_REDIST})"))
        elif lib and any(n in lib for n in ("cudnn", "cublas", "cudart", "nccl", "nvrtc", "cufft", "cusparse",
                                            "curand", "cusolver", "nvJitLink", "cufile", "nvshmem")):
            detail = (f"{lib} comes from the nvidia-* wheels torch depends on; they are missing or incomplete "
                      "(e.g. installed with --no-deps).")
            # not --force-reinstall --no-deps, which would put torch's files back and still leave them out
            fixes = [_reinstall(report, tables, ver, cuda, dependencies=True)]
        else:
            detail = "The loader could not find the library; reinstalling torch restores its own libraries."
    elif kind == "dll_init_failed":
        title = f"`import torch` fails: {lib or 'a DLL'} failed to initialise (Windows error 1114)"
        detail = "Common with torch >= 2.9 on Windows and an old Visual C++ runtime."
        fixes.insert(0, Fix(description=f"install the latest Visual C++ Redistributable ({VC_REDIST})"))
    elif kind in ("missing_procedure", "undefined_symbol"):
        what = cause.get("symbol") or lib or "a function"
        title = f"`import torch` fails: {what} is missing from a loaded library"
        detail = ("Another copy of one of torch's libraries was loaded first (PATH, another package's DLLs), or "
                  "files of two torch versions are mixed.")
    elif kind == "crash":
        title = "`import torch` kills the process"
        detail = msg
    elif kind == "timeout":
        title = "`import torch` does not finish"
        detail = msg
    else:
        title = f"`import torch` fails: {msg[:160]}"
        detail = ""
    yield finding(IMPORT, title, detail=detail,
                  evidence={"component": "torch", "status": c.load.status, "message": msg, "cause": kind,
                            **{k: v for k, v in cause.items() if k in ("library", "symbol", "winerror", "language")}},
                  fixes=fixes)


@check(CPU_BUILD)
def torch_cpu_build_with_gpu(report: Report, tables: Tables) -> Iterable[Finding]:
    ver = torch_version(report)
    if ver is None or torch_cuda(report) or torch_hip(report) or not report.gpu.devices:
        return
    if os_name(report) == "macos":
        return
    rel = tables_query.torch_release(tables, ver)
    builds = []
    if rel is not None:
        builds = sorted((b for b in rel.get("cuda", []) + rel.get("cuda_experimental", [])
                         if tables_query.driver_runs(tables, report.gpu.driver_version, report.gpu.cuda_driver_version,
                                               b, os_name(report))),
                        key=tables_query.vkey, reverse=True)
    fixes = []
    if builds:
        fx = _reinstall(report, tables, ver, builds[0])
        fx.description = (f"install the CUDA {builds[0]} build of torch {tables_query.public(ver)} (the newest its "
                          "driver runs); changes torch: `envdoctor fix` applies it only with --allow-torch-change")
        fixes.append(fx)
    devs = ", ".join(d.name for d in report.gpu.devices)
    yield finding(CPU_BUILD, f"torch {ver} is a CPU-only build, but this machine has an NVIDIA GPU ({devs})",
                  detail="torch.cuda.is_available() is False; everything runs on the CPU.",
                  evidence={"torch": ver, "torch.version.cuda": None, "gpus": devs,
                            "driver": report.gpu.driver_version, "driver_cuda": report.gpu.cuda_driver_version},
                  fixes=fixes)


@check(SHADOWED)
def torch_shadowed(report: Report, tables: Tables) -> Iterable[Finding]:
    c = comp(report, "torch")
    if c is None:
        return
    dirs = package_dir_paths(c)
    if len(dirs) < 2:
        return
    first = os.path.dirname(dirs[0])
    user_site = report.python.user_site
    in_user = bool(user_site) and os.path.normpath(first) == os.path.normpath(user_site or "")
    where = "the user site" if in_user else first
    fixes = [Fix(description=f"remove the copy in {where} (pip uninstalls the first one it finds)",
                 commands=[f"{pip(report)} uninstall -y torch"])]
    if in_user:
        fixes.append(Fix(description="or ignore the user site for this environment: set PYTHONNOUSERSITE=1"))
    yield finding(SHADOWED, f"two copies of torch are visible: the one in {where} shadows {dirs[1]}",
                  evidence={"package_dirs": dirs, "user_site": user_site,
                            "user_site_enabled": report.python.user_site_enabled},
                  fixes=fixes)


@check(VERSION_SKEW)
def torch_version_skew(report: Report, tables: Tables) -> Iterable[Finding]:
    c = comp(report, "torch")
    if c is None:
        return
    pkg = report.packages.get("torch")
    dist_version = pkg.version if pkg is not None else None
    vp = (c.facts.get("version_py") or {}).get("__version__")
    rt = runtime(c)
    imported = rt.get("version") if isinstance(rt.get("version"), str) else None
    seen = {k: v for k, v in (("pip (dist-info)", dist_version), ("torch/version.py", vp),
                               ("import torch", imported)) if v and not v.startswith("error:")}
    publics = {tables_query.public(v) for v in seen.values()}
    if len(publics) < 2:
        return
    minors = {tables_query.minor_of(v) for v in publics}
    fixes = [_reinstall(report, tables, vp or imported or dist_version or "", torch_cuda(report))]
    yield finding(VERSION_SKEW, "the installed torch and the imported torch differ: "
                  + ", ".join(f"{k} {v}" for k, v in seen.items()),
                  detail=f"`import torch` loads {rt.get('file') or c.location}.",
                  evidence={"versions": seen, "imported_file": rt.get("file"), "location": c.location},
                  fixes=fixes, severity="error" if len(minors) > 1 else "warning")


@check(PYTHON)
def torch_python_unsupported(report: Report, tables: Tables) -> Iterable[Finding]:
    ver = torch_version(report)
    py = python_minor(report)
    if ver is None or not py:
        return
    rel = tables_query.torch_release(tables, ver)
    if rel is None or tables_query.in_spec(py, rel["python"]):
        return
    yield finding(PYTHON, f"Python {py} is outside torch {rel['torch']}'s supported range ({rel['python']})",
                  evidence={"python": report.python.version, "torch": ver, "supported": rel["python"],
                            "source": rel["source"]},
                  fixes=[Fix(description=f"use a Python in {rel['python']} for torch {rel['torch']}")])
