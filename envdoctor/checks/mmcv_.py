"""ED4xx: mmcv: which flavour, whether its ops load and why not, its consumers, wheels and builds."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from envdoctor import matrix
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import alternative_fixes, compat_fix, mmcv_wheel_choice, pip, wheel_fix
from envdoctor.fact_readers import (comp, consumers, damaged, load_cause, load_message, load_status, mmcv_dist_names,
                                    mmcv_dists, mmcv_series, mmcv_version, norm, os_name, python_minor,
                                    runtime, torch_cuda, torch_unusable, torch_version)
from envdoctor.facts import FAILED, Finding, Fix, Report
from envdoctor.fix_choice import FixChoice

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

CONFLICT = Rule(
    id="ED403", name="mmcv-distributions-conflict", severity="error", component="mmcv",
    summary="Several mmcv distributions are installed over each other, or files in mmcv's RECORD are missing.",
    rationale="mmcv, mmcv-full and mmcv-lite all install the same package directory mmcv/. Installing one over "
    "another mixes their files; uninstalling one deletes files the other still lists (pip check stays clean). "
    "mmcv's docs: 'Do not install both versions in the same environment'.",
    evidence=("components.mmcv.facts.distributions", "packages.<mmcv dist>.record_missing"),
    tables=("mmcv_flavour",),
    fixes=("uninstall every mmcv distribution, then install exactly one",),
    explains=("mmcv", "mmcv._ext"),
)

CONSUMER = Rule(
    id="ED404", name="mmcv-outside-consumer-range", severity="error", component="mmcv",
    summary="The installed mmcv is outside the range an installed OpenMMLab package accepts.",
    rationale="mmdet, mmseg, mmdet3d, mmpose, ... assert the mmcv version when imported ('MMCV==2.2.0 is used but "
    "incompatible. Please install mmcv>=2.0.0rc4, <2.2.0.'). Their metadata lists mmcv only under the `mim` "
    "extra, so pip never enforces it. Every PyPI release of mmdet rejects mmcv 2.2.0.",
    evidence=("packages.<consumer>.version", "components.mmcv.version"),
    tables=("mmcv_consumer", "mmcv_wheels"),
    fixes=("install the newest mmcv wheel inside every consumer's range",),
)

NO_WHEEL = Rule(
    id="ED405", name="mmcv-no-official-wheel", severity="warning", component="mmcv",
    summary="No official prebuilt mmcv wheel exists for this torch/CUDA/Python/OS: the compat layer is the fix.",
    rationale="OpenMMLab's last release (mmcv 2.2.0, 2024-04) has wheels up to torch 2.4 (Linux) / 2.3 (Windows), "
    "CUDA 12.1, Python 3.12 (Linux) / 3.11 (Windows); none for torch >= 2.5, Python >= 3.13, aarch64. Where no "
    "wheel exists the choices are: envdoctor's compat layer (no change to torch), another torch/Python with "
    "wheels, or a source build (ED407).",
    evidence=("components.torch.version", "components.torch.facts.version_py.cuda", "python.version", "host.os"),
    tables=("mmcv_wheels", "torch_release", "mmcv_index", "torch_pair"),
    fixes=("`envdoctor fix --apply --strategy compat`", "or the newest torch/mmcv combination with wheels"),
)

STALE_CACHE = Rule(
    id="ED406", name="mmcv-stale-wheel-cache", severity="warning", component="mmcv",
    summary="pip's cache holds a locally built mmcv wheel that `pip install mmcv==X` will reuse for any torch.",
    rationale="pip caches a wheel it built from an sdist under a key made from the sdist URL only. The torch it "
    "was built against is not part of the key (nor of the file name: cp311-cp311-linux_x86_64), so a later "
    "install in an environment with another torch reuses it silently and fails with undefined symbols.",
    evidence=("extra.pip_cache.wheels", "components.mmcv._ext.load"),
    fixes=("`pip cache remove mmcv`, and install with --no-cache-dir",),
)

BUILD = Rule(
    id="ED407", name="mmcv-source-build-will-fail", severity="warning", component="mmcv",
    summary="A source build of mmcv here would fail (or build without ops), and why.",
    rationale="With no wheel, pip falls back to mmcv's sdist. Today that fails before compiling: setuptools >= 82 "
    "has no pkg_resources, Python 3.13 breaks setup.py's get_version(), mmcv-full <= 1.7.1 / mmcv <= 2.0.1 use "
    "-std=c++14 against torch >= 2.1 headers, torch >= 2.14 headers need C++20; or it silently builds no ops "
    "(isolated build without torch) or CPU-only ops (no nvcc / no visible GPU).",
    evidence=("packages.setuptools.version", "python.version", "components.torch.version", "cuda_toolkit"),
    tables=("mmcv_build",),
    fixes=("the build recipe that avoids each pitfall, or the compat layer",),
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


def _major(version: Optional[str]) -> Optional[int]:
    v = matrix.parse_version(version)
    return v.major if v is not None else None


def _ops_ok(report: Report) -> bool:
    return load_status(report, "mmcv._ext") == "ok"


def _ops_expected(report: Report, tables: Any) -> bool:
    """Does this environment want mmcv's ops? Not for a lone, deliberate mmcv-lite without consumers."""
    dists = mmcv_dists(report, tables)
    if load_status(report, "mmcv._ext") in FAILED or len(dists) > 1 or consumers(report, tables):
        return True
    return dists != ["mmcv-lite"]


def _wheel_or_compat(report: Report, tables: Any, what: str, series: Optional[int] = None,
                     with_alternatives: bool = False) -> tuple[list[Fix], Optional[FixChoice]]:
    """The wheel fix when an official wheel exists, else the compat layer (+ alternatives)."""
    blocked = _blocked(report)
    if blocked:
        return [Fix(description=blocked)], None
    if torch_version(report) is None:
        return [Fix(description="install torch first: mmcv's ops are built against a specific torch")], None
    choice = mmcv_wheel_choice(report, tables, series)
    if choice is not None:
        return [wheel_fix(report, choice, what)], choice
    fixes = [compat_fix(report)]
    if with_alternatives:
        fixes += alternative_fixes(report, tables, mmcv_major=series)
    return fixes, None


def _blocked(report: Report) -> Optional[str]:
    """Why no mmcv fix (wheel or compat) can be judged now: torch or mmcv itself does not import (ED003/ED201)."""
    if torch_unusable(report):
        return ("repair torch first (its finding above says how): mmcv's ops and the compat layer both run on "
                "torch, so no mmcv fix can work or be chosen while `import torch` is broken")
    if damaged(report, "mmcv"):
        return "reinstall mmcv first (ED003): the compat layer replaces only mmcv._ext, not a damaged mmcv"
    return None


def _flavour_reason(report: Report, tables: Any, dist: str, version: Optional[str]) -> tuple[str, bool]:
    """Why this flavour has no _ext, and whether it was meant to have one."""
    row = matrix.flavour(tables, dist, version)
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
def mmcv_without_ops(report: Report, tables: Any) -> Iterable[Finding]:
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
    series = _major(version) if norm(dist) != "mmcv-lite" else 2
    if series == 1 and norm(dist) == "mmcv":
        series = 1
    fixes, _ = _wheel_or_compat(report, tables, "install mmcv with compiled ops", series=series,
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


def _built_for(report: Report, tables: Any) -> dict[str, str]:
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
def mmcv_ext_load_fails(report: Report, tables: Any) -> Iterable[Finding]:
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
    fixes, choice = _wheel_or_compat(report, tables, "replace it with the official wheel built for this torch",
                                     series=_major(version))
    if choice is None and not _blocked(report):
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


@check(CONFLICT)
def mmcv_conflict(report: Report, tables: Any) -> Iterable[Finding]:
    dists = mmcv_dists(report, tables)
    missing = {d: report.packages[d].record_missing for d in dists
               if d in report.packages and report.packages[d].record_missing}
    if len(dists) < 2 and not missing:
        return
    names = [f"{report.packages[d].name} {report.packages[d].version}" if d in report.packages else d for d in dists]
    if len(dists) > 1:
        title = f"several mmcv distributions are installed over each other: {', '.join(names)}"
    else:
        d, n = next(iter(missing.items()))
        title = f"{n} of the files {names[0]} installed are missing on disk"
    imported = mmcv_version(report)
    detail = (f"They share the directory mmcv/; `import mmcv` now sees version {imported}."
              if len(dists) > 1 else "Another mmcv distribution was uninstalled and took shared files with it.")
    if missing:
        detail += " Missing files: " + ", ".join(f"{d}: {n}" for d, n in missing.items()) + "."
    fixes, _ = _wheel_or_compat(report, tables, "then install one mmcv with ops", series=_major(imported))
    every = " ".join(sorted(set(dists) | set(mmcv_dist_names(tables))))
    remove = [Fix(description="uninstall every mmcv distribution (run until pip finds none)",
                  commands=[f"{pip(report)} uninstall -y {every}"])]
    yield finding(CONFLICT, title, detail=detail,
                  evidence={"component": "mmcv", "distributions": names, "record_missing": missing,
                            "imported_version": imported},
                  fixes=remove + fixes)


@check(CONSUMER)
def mmcv_outside_consumer_range(report: Report, tables: Any) -> Iterable[Finding]:
    version = mmcv_version(report)
    if version is None:
        return
    bad = [r for r in matrix.consumer_ranges(tables, consumers(report, tables))
           if not matrix.in_spec(version, r["mmcv"])]
    if not bad:
        return
    ver = torch_version(report)
    fixes: list[Fix] = []
    if ver is not None:
        choice = mmcv_wheel_choice(report, tables)
        if choice is not None:
            fixes.append(wheel_fix(report, choice, "install mmcv inside every range"))
        else:
            fixes.append(Fix(description=f"no official mmcv wheel inside {', '.join(r['mmcv'] for r in bad)} exists "
                                         f"for torch {ver}; change torch (below) or use the compat layer"))
            fixes += alternative_fixes(report, tables, mmcv_major=_major(bad[0]["mmcv"].split(",")[0].lstrip("<>=!~ ")))
    for row in bad:
        yield finding(CONSUMER, f"{row['package']} {row['installed']} accepts mmcv {row['mmcv']}, but mmcv {version} "
                                "is installed",
                      detail=f"`import {row['package'].replace('mmsegmentation', 'mmseg')}` raises AssertionError: "
                             f"MMCV=={version} is used but incompatible.",
                      evidence={"consumer": f"{row['package']} {row['installed']}", "accepts": row["mmcv"],
                                "mmcv": version, "source": row["source"]},
                      fixes=fixes)


@check(NO_WHEEL)
def mmcv_no_official_wheel(report: Report, tables: Any) -> Iterable[Finding]:
    if comp(report, "mmcv") is None or _ops_ok(report) or report.mode != "full" or not _ops_expected(report, tables):
        return
    if torch_unusable(report):
        return  # which mmcv fits can only be said of a torch that imports (ED003 / ED201 say what to repair)
    ver = torch_version(report)
    if ver is None:
        return
    cuda, py, os_ = torch_cuda(report), python_minor(report), os_name(report)
    if matrix.mmcv_wheel_for(tables, ver, cuda, py, os_, consumers(report, tables)) is not None:
        return
    reasons = matrix.why_no_mmcv_wheel(tables, ver, cuda, py, os_)
    series = mmcv_series(report)
    fixes = ([] if _blocked(report) else [compat_fix(report)]) + alternative_fixes(report, tables, mmcv_major=series)
    if series == 1:
        fixes += alternative_fixes(report, tables, mmcv_major=2, limit=1)
    yield finding(NO_WHEEL, f"no official mmcv wheel exists for torch {ver}, Python {py}, {os_}",
                  detail="; ".join(reasons) + ".",
                  evidence={"torch": ver, "torch.version.cuda": cuda, "python": report.python.version, "os": os_,
                            "index_checked": matrix.mmcv_index_url(tables, ver, cuda)},
                  fixes=fixes)


def _cache_matches(wheel: dict[str, Any], abi: Optional[str]) -> bool:
    tags = str(wheel.get("python_tag") or "").split(".")
    return (abi is not None and abi in tags) or "py3" in tags


@check(STALE_CACHE)
def mmcv_stale_wheel_cache(report: Report, tables: Any) -> Iterable[Finding]:
    cache = report.extra.get("pip_cache") if isinstance(report.extra, dict) else None
    if not isinstance(cache, dict):
        return
    wheels = [w for w in cache.get("wheels") or [] if isinstance(w, dict) and _cache_matches(w, report.python.abi_tag)]
    if not wheels:
        return
    status = load_status(report, "mmcv._ext")
    cause = load_cause(report, "mmcv._ext").get("kind")
    symbol_break = status in FAILED and cause in ("undefined_symbol", "missing_procedure")
    no_ops = comp(report, "mmcv") is not None and status == "missing" and _ops_expected(report, tables)
    local_install = False
    for key in mmcv_dists(report, tables):
        pkg = report.packages.get(key)
        if pkg is not None and not pkg.direct_url and any(w.get("version") == pkg.version for w in wheels):
            local_install = True
    if not (symbol_break or no_ops or local_install):
        return
    pure = [w for w in wheels if str(w.get("platform_tag")) == "any"]
    w0 = wheels[0]
    if pure and (no_ops or not symbol_break):
        w0 = pure[0]
        what = (f"pip's cache holds {w0['package']} {w0['version']} built WITHOUT ops ({w0['file']}): "
                f"`pip install {w0['package']}=={w0['version']}` reinstalls it")
    else:
        what = (f"pip's cache holds a locally built {w0['package']} wheel ({w0['file']}) that the next "
                "`pip install` reuses whatever torch is installed")
    yield finding(STALE_CACHE, what,
                  detail=("The installed mmcv has the same version and no direct_url.json: most likely it came "
                          "from this cache." if local_install else
                          "A reinstall without --no-cache-dir would bring the same build back."),
                  evidence={"cached_wheels": [w.get("file") for w in wheels], "cache_dir": cache.get("cache_dir"),
                            "origin": [w.get("origin_url") for w in wheels]},
                  fixes=[Fix(description="drop the cached builds, and install with --no-cache-dir from now on",
                             commands=[f"{pip(report)} cache remove mmcv", f"{pip(report)} cache remove mmcv_full"])])


@check(BUILD)
def mmcv_source_build_will_fail(report: Report, tables: Any) -> Iterable[Finding]:
    if comp(report, "mmcv") is None or _ops_ok(report) or report.mode != "full" or not _ops_expected(report, tables):
        return
    if torch_unusable(report):
        return  # a build needs a working torch first
    ver = torch_version(report)
    if ver is None:
        return
    cuda, py, os_ = torch_cuda(report), python_minor(report), os_name(report)
    if matrix.mmcv_wheel_for(tables, ver, cuda, py, os_, consumers(report, tables)) is not None:
        return  # a wheel exists: nobody needs to build
    mmcv_ver = mmcv_version(report) or "2.2.0"
    setuptools = report.packages.get("setuptools")
    blockers = []
    for row in tables.rows("mmcv_build"):
        if "mmcv" in row and not matrix.in_spec(mmcv_ver, row["mmcv"]):
            continue
        if "torch" in row and not matrix.in_spec(ver, row["torch"]):
            continue
        if "python" in row and not matrix.in_spec(report.python.version, row["python"]):
            continue
        if "setuptools" in row and setuptools is not None and not matrix.in_spec(setuptools.version, row["setuptools"]):
            # the environment's setuptools is fine for --no-build-isolation; an isolated build still gets the newest
            blockers.append({"kind": row["kind"], "title": row["title"] + " (in an isolated build; the "
                             f"environment's setuptools {setuptools.version} is fine with --no-build-isolation)",
                             "fix": row.get("fix"), "source": row["source"]})
            continue
        blockers.append({"kind": row["kind"], "title": row["title"], "fix": row.get("fix"), "source": row["source"]})
    tk = report.cuda_toolkit
    if cuda:
        if not tk.nvcc:
            blockers.append({"kind": "no-nvcc", "title": f"no nvcc/CUDA_HOME: a build gets CPU-only ops although torch "
                             f"uses CUDA {cuda}",
                             "fix": f"install the CUDA {cuda} toolkit and set CUDA_HOME, with FORCE_CUDA=1"})
        elif tk.version and tk.version.split(".")[0] != cuda.split(".")[0]:
            blockers.append({"kind": "nvcc-mismatch", "title": f"nvcc is CUDA {tk.version}, torch is CUDA {cuda}: "
                             "torch.utils.cpp_extension refuses a different major",
                             "fix": f"point CUDA_HOME at a CUDA {cuda} toolkit",
                             "source": "https://github.com/open-mmlab/mmcv/issues/3288"})
    if not blockers:
        return
    yield finding(BUILD, f"a source build of mmcv {mmcv_ver} here would fail: {blockers[0]['title']}",
                  detail="\n".join(f"- {b['title']}" for b in blockers[1:]),
                  evidence={"torch": ver, "python": report.python.version,
                            "setuptools": setuptools.version if setuptools else None,
                            "nvcc": tk.version, "blockers": [b["kind"] for b in blockers]},
                  fixes=[Fix(description="if you build anyway: "
                             + "; ".join(b["fix"] for b in blockers if b.get("fix")))]
                  + ([] if _blocked(report) else [compat_fix(report)]))


@check(CPU_OPS)
def mmcv_ops_without_cuda(report: Report, tables: Any) -> Iterable[Finding]:
    if not _ops_ok(report):
        return
    ext = report.components["mmcv._ext"]
    built = ext.facts.get("compiling_cuda_version")
    cuda = torch_cuda(report)
    if built != "not available" or not cuda or not report.gpu.devices:
        return
    fixes, _ = _wheel_or_compat(report, tables, "install the CUDA build of mmcv's ops",
                                series=mmcv_series(report))
    yield finding(CPU_OPS, f"mmcv's ops have no CUDA kernels, but torch uses CUDA {cuda} on this GPU",
                  detail="Ops on CUDA tensors fail with '<op>_impl: implementation for device cuda:0 not found'.",
                  evidence={"compiling_cuda_version": built, "torch.version.cuda": cuda}, fixes=fixes)


@check(CUDA_SKEW)
def mmcv_ext_cuda_mismatch(report: Report, tables: Any) -> Iterable[Finding]:
    if not _ops_ok(report):
        return
    built = report.components["mmcv._ext"].facts.get("compiling_cuda_version")
    cuda = torch_cuda(report)
    if not isinstance(built, str) or not re.match(r"^\d+\.\d+", built) or not cuda:
        return
    if built.split(".")[0] == cuda.split(".")[0]:
        return
    fixes, _ = _wheel_or_compat(report, tables, "install mmcv built for torch's CUDA",
                                series=mmcv_series(report))
    yield finding(CUDA_SKEW, f"mmcv._ext was compiled for CUDA {built}, torch for CUDA {cuda}",
                  evidence={"compiling_cuda_version": built, "torch.version.cuda": cuda}, fixes=fixes)
