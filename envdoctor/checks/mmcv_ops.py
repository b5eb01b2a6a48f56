"""ED401, ED402, ED408, ED409: mmcv's compiled ops (mmcv._ext): missing from the installed flavour, failing to
load and why, built without CUDA kernels or for another CUDA than torch's."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Optional

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import mmcv_fix_blocked, mmcv_fixes
from envdoctor.fact_readers import (comp, consumers, load_cause, load_message, mmcv_dists, mmcv_ops_ok, mmcv_series,
                                    mmcv_version, norm, runtime, torch_cuda, torch_unusable, torch_version,
                                    version_major)
from envdoctor.facts import FAILED, Finding, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

NO_OPS = Rule(
    id="ED401", name="mmcv-without-ops", severity="error", component="mmcv",
    summary="mmcv._ext does not exist: the installed mmcv flavour has no compiled ops.",
    rationale="mmcv-full (1.x) and mmcv (2.x) carry the compiled ops mmcv._ext; mmcv 1.x from PyPI and mmcv-lite "
    "do not. PyPI has only sdists of mmcv/mmcv-full, and pip's isolated build has no torch, so `pip install mmcv` "
    "prints 'Skip building ext ops due to the absence of torch.' and installs a py3-none-any wheel without "
    "_ext. Any `from mmcv.ops import ...` then fails with No module named 'mmcv._ext'. Warning only for a "
    "deliberate mmcv-lite without consumers that need ops.",
    evidence=("components.mmcv.distribution", "packages.<mmcv dist>.wheel_tags",
              "components.mmcv._ext.facts.ext_files"),
    tables=("mmcv_flavour", "mmcv_wheels", "mmcv_index", "mmcv_consumer"),
    fixes=("install the official wheel with ops for this torch/CUDA/Python/OS (`envdoctor fix --apply --strategy "
           "wheel`)", "where no wheel exists: the compat layer (`envdoctor fix --apply --strategy compat`)"),
    explains=("mmcv._ext",),
)

EXT_FAILS = Rule(
    id="ED402", name="mmcv-ext-load-fails", severity="error", component="mmcv",
    summary="mmcv._ext exists but does not load; the cause says what it was built against.",
    rationale="mmcv's compiled ops are built for one torch (its C++ ABI), one CUDA runtime and one Python. An "
    "undefined c10/at symbol (Linux) or 'The specified procedure could not be found' (Windows error 127) means "
    "another torch than the one it was built for; a __cxx11 symbol against a torch built with the old C++ ABI "
    "means a locally built wheel meets a pre-cxx11 torch; a missing libcudart/cudart64 means another CUDA; "
    "Windows error 126 means a DLL it depends on (CUDA runtime, torch) is not found.",
    evidence=("components.mmcv._ext.load", "components.mmcv._ext.facts.load_cause",
              "components.torch.facts.runtime.cxx11_abi", "packages.<mmcv dist>.direct_url"),
    tables=("load_error", "winerror", "win_message", "mmcv_wheels", "mmcv_index"),
    fixes=("install the official wheel built for this torch/CUDA", "where none exists: the compat layer"),
    explains=("mmcv._ext", "mmcv"),
)

CPU_OPS = Rule(
    id="ED408", name="mmcv-ops-without-cuda", severity="warning", component="mmcv",
    summary="mmcv._ext loads but has no CUDA kernels while torch uses CUDA on this GPU.",
    rationale="get_compiling_cuda_version() == 'not available' marks a CPU-only build (the cpu wheel, mim on a "
    "ROCm/CPU torch, or a source build without a visible GPU and FORCE_CUDA=1). Ops on CUDA tensors then fail "
    "with '<op>_impl: implementation for device cuda:0 not found'.",
    evidence=("components.mmcv._ext.facts.compiling_cuda_version", "components.torch.facts.version_py.cuda",
              "gpu.devices"),
    tables=("mmcv_wheels", "mmcv_index"),
    fixes=("install the cuXY wheel for torch's CUDA build",),
)

CUDA_SKEW = Rule(
    id="ED409", name="mmcv-ext-cuda-mismatch", severity="warning", component="mmcv",
    summary="mmcv._ext was compiled for another CUDA major than torch's build.",
    rationale="mmcv._ext links the CUDA runtime it was compiled with; with torch's runtime of another major both "
    "are loaded, and kernels or memory handles can fail at run time.",
    evidence=("components.mmcv._ext.facts.compiling_cuda_version", "components.torch.facts.version_py.cuda"),
    tables=("mmcv_wheels",),
    fixes=("install the wheel for torch's CUDA build",),
)

TORCH_SYMBOL = re.compile(r"^_ZN?K?\d*(3c10|2at|5torch|6caffe2)|c10::|at::|torch::")

def _flavour_reason(report: Report, tables: Tables, dist: str, version: Optional[str]) -> tuple[str, bool]:
    """Why this flavour has no _ext, and whether it was meant to have one."""
    row = tables_query.flavour(tables, dist, version)
    pkg = report.packages.get(norm(dist))
    tags = pkg.wheel_tags if pkg is not None else []
    if row is not None and not row["ops"]:
        if dist == "mmcv-lite":
            return f"mmcv-lite {version} is the lite flavour of mmcv: it never has compiled ops", False
        return (f"mmcv {version} (the `mmcv` package of the 1.x series) is the lite package: the 1.x ops are in "
                "`mmcv-full`", False)
    if any(t.endswith("none-any") for t in tags):
        return (f"{dist} {version} was built from the sdist without torch ('Skip building ext ops due to the "
                f"absence of torch.'): its wheel is {tags[0]}, without mmcv._ext", True)
    return f"{dist} {version} should have compiled ops, but its files list no mmcv/_ext", True


@check(NO_OPS)
def mmcv_without_ops(report: Report, tables: Tables) -> Iterable[Finding]:
    m = comp(report, "mmcv")
    ext = report.components.get("mmcv._ext")
    if m is None or ext is None or ext.installed or (ext.facts.get("ext_files") or []):
        return
    if ext.load is not None and ext.load.status not in ("missing", "skipped"):
        return  # something named _ext exists and failed to load: ED402
    dists = mmcv_dists(report, tables)
    if len(dists) > 1:
        return  # ED403 explains the mixed install
    dist = dists[0] if dists else (m.distribution or "mmcv")
    version = mmcv_version(report)
    reason, meant_ops = _flavour_reason(report, tables, norm(dist), version)
    users = consumers(report, tables)
    series = version_major(version) if norm(dist) != "mmcv-lite" else 2
    if series == 1 and norm(dist) == "mmcv":
        series = 1
    fixes, _ = mmcv_fixes(report, tables, "install mmcv with compiled ops", series=series,
                                with_alternatives=False)
    severity = "error" if (meant_ops or users or norm(dist) == "mmcv") else "warning"
    title = f"mmcv._ext is missing: {reason}"
    yield finding(NO_OPS, title,
                  detail="`from mmcv.ops import ...` fails with No module named 'mmcv._ext'."
                  + (f" Installed packages that need mmcv's ops: {', '.join(users)}." if users else ""),
                  evidence={"component": "mmcv._ext", "distribution": dist, "version": version,
                            "wheel_tags": (report.packages[norm(dist)].wheel_tags
                                           if norm(dist) in report.packages else []),
                            "ext_files": ext.facts.get("ext_files") or [], "load": load_message(report, "mmcv._ext")},
                  fixes=fixes, severity=severity)


def _built_for(report: Report, tables: Tables) -> dict[str, str]:
    """(cu, torch) from direct_url.json of an install from the OpenMMLab index, if any."""
    for key in mmcv_dists(report, tables):
        pkg = report.packages.get(key)
        url = (pkg.direct_url or {}).get("url", "") if pkg is not None and pkg.direct_url else ""
        mm = re.search(r"/mmcv/dist/(cu\d+|cpu)/torch([\d.]+)/", url)
        if mm:
            return {"cuda": mm.group(1), "torch": mm.group(2)}
    return {}


def _ext_explanation(report: Report, cause: dict[str, Any]) -> tuple[str, str]:
    """(title tail, detail) for a failed _ext load."""
    kind = cause.get("kind", "unknown")
    sym = cause.get("symbol") or ""
    lib = cause.get("library") or ""
    ver = torch_version(report) or "?"
    t_cuda = torch_cuda(report)
    cxx11_torch = runtime(comp(report, "torch")).get("cxx11_abi")
    if kind == "missing_procedure":
        lang = f" ({cause['language']})" if cause.get("language") not in (None, "en") else ""
        return (f"a function it imports is missing from the loaded DLLs (Windows error 127{lang}): mmcv's ops were "
                f"built for another torch than {ver}",
                "The DLL was found, but it lacks an export mmcv._ext was linked against: torch's DLLs changed "
                "between the torch mmcv was built for and the installed one.")
    if kind == "undefined_symbol":
        if cause.get("cxx11_symbol") and cxx11_torch is False:
            return (f"undefined symbol {sym[:80]}: built with the new C++ ABI (__cxx11) against a torch built "
                    "with the old one",
                    f"torch {ver} has _GLIBCXX_USE_CXX11_ABI=0; mmcv._ext was built against a cxx11-ABI torch "
                    "(typically a locally built wheel reused from pip's cache).")
        if TORCH_SYMBOL.search(sym):
            return (f"undefined symbol {sym[:80]}: mmcv's ops were built against another torch than {ver}",
                    "The symbol is torch's (c10/at/torch): the torch mmcv was built with exported it, this one "
                    "does not.")
        return (f"undefined symbol {sym[:80]}", "A library mmcv._ext links against lacks this symbol.")
    if kind == "missing_library":
        if re.search(r"cudart", lib):
            mm = re.search(r"cudart(?:64_|\.so\.)(\d+)", lib)
            built = mm.group(1) if mm else "?"
            return (f"{lib} is not found: mmcv's ops were built for CUDA {built}, torch {ver} has "
                    f"{'CUDA ' + t_cuda if t_cuda else 'no CUDA'}",
                    "mmcv._ext needs the CUDA runtime it was compiled with.")
        if "torch_cuda" in lib or "c10_cuda" in lib:
            return (f"{lib} is not found: mmcv's ops were built for a CUDA torch, torch {ver} is "
                    f"{'a different build' if t_cuda else 'CPU-only'}", "")
        if cause.get("winerror") == 126:
            return (f"a DLL it depends on is not found (Windows error 126{': ' + lib if lib else ''})",
                    "Usually the CUDA runtime mmcv was built with, or another torch's DLLs.")
        return (f"{lib or 'a library'} is not found", "")
    if kind == "stale_ext":
        return (f"{sym} is missing from mmcv._ext: the _ext comes from another mmcv version", "")
    if kind == "dll_init_failed":
        return ("a DLL failed to initialise (Windows error 1114)", "Install the latest Visual C++ Redistributable.")
    if kind == "crash":
        return ("importing it kills the process", "")
    return (load_message(report, "mmcv._ext")[:160], "")


@check(EXT_FAILS)
def mmcv_ext_load_fails(report: Report, tables: Tables) -> Iterable[Finding]:
    if comp(report, "mmcv") is None:
        return
    ext = report.components.get("mmcv._ext")
    if ext is None or ext.load is None or ext.load.status not in FAILED:
        return
    cause = load_cause(report, "mmcv._ext")
    tail, detail = _ext_explanation(report, cause)
    if torch_unusable(report):
        tail = f"{load_message(report, 'mmcv._ext')[:120]} (torch itself does not import as a working module)"
        detail = "Whatever else is wrong with mmcv can only be judged once torch imports."
    version = mmcv_version(report)
    dist = (mmcv_dists(report, tables) or [ext.distribution or "mmcv"])[0]
    fixes, choice = mmcv_fixes(report, tables, "replace it with the official wheel built for this torch",
                                     series=version_major(version))
    if choice is None and not mmcv_fix_blocked(report):
        detail = (detail + " No official wheel exists for this combination (ED405).").strip()
    evidence = {"component": "mmcv._ext", "message": load_message(report, "mmcv._ext"),
                "cause": cause.get("kind"), "distribution": f"{dist} {version}",
                "torch": torch_version(report), "torch.version.cuda": torch_cuda(report)}
    for key in ("library", "symbol", "winerror", "language"):
        if cause.get(key) is not None:
            evidence[key] = cause[key]
    if "cxx11_abi" in runtime(comp(report, "torch")):
        evidence["torch_cxx11_abi"] = runtime(comp(report, "torch"))["cxx11_abi"]
    built = _built_for(report, tables)
    if built:
        evidence["built_for"] = built
    yield finding(EXT_FAILS, f"mmcv._ext does not load: {tail}", detail=detail, evidence=evidence, fixes=fixes)


@check(CPU_OPS)
def mmcv_ops_without_cuda(report: Report, tables: Tables) -> Iterable[Finding]:
    if not mmcv_ops_ok(report):
        return
    ext = report.components["mmcv._ext"]
    built = ext.facts.get("compiling_cuda_version")
    cuda = torch_cuda(report)
    if built != "not available" or not cuda or not report.gpu.devices:
        return
    fixes, _ = mmcv_fixes(report, tables, "install the CUDA build of mmcv's ops",
                                series=mmcv_series(report))
    yield finding(CPU_OPS, f"mmcv's ops have no CUDA kernels, but torch uses CUDA {cuda} on this GPU",
                  detail="Ops on CUDA tensors fail with '<op>_impl: implementation for device cuda:0 not found'.",
                  evidence={"compiling_cuda_version": built, "torch.version.cuda": cuda}, fixes=fixes)


@check(CUDA_SKEW)
def mmcv_ext_cuda_mismatch(report: Report, tables: Tables) -> Iterable[Finding]:
    if not mmcv_ops_ok(report):
        return
    built = report.components["mmcv._ext"].facts.get("compiling_cuda_version")
    cuda = torch_cuda(report)
    if not isinstance(built, str) or not re.match(r"^\d+\.\d+", built) or not cuda:
        return
    if built.split(".")[0] == cuda.split(".")[0]:
        return
    fixes, _ = mmcv_fixes(report, tables, "install mmcv built for torch's CUDA",
                                series=mmcv_series(report))
    yield finding(CUDA_SKEW, f"mmcv._ext was compiled for CUDA {built}, torch for CUDA {cuda}",
                  evidence={"compiling_cuda_version": built, "torch.version.cuda": cuda}, fixes=fixes)
