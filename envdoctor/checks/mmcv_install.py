"""ED403-ED407: the installed mmcv against what it should be: distributions installed over each other, the
consumers' ranges, no official wheel for this torch, pip's stale wheel cache, a source build that would fail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import (alternative_fixes, compat_fix, mmcv_fix_blocked, mmcv_fixes, mmcv_wheel_choice,
                                     pip, wheel_fix)
from envdoctor.fact_readers import (comp, consumers, load_cause, load_status, mmcv_dist_names, mmcv_dists,
                                    mmcv_ops_expected, mmcv_ops_ok, mmcv_series, mmcv_version, os_name, python_minor,
                                    torch_cuda, torch_unusable, torch_version, version_major)
from envdoctor.facts import FAILED, Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

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
    evidence=("pip_cache.wheels", "components.mmcv._ext.load"),
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


@check(CONFLICT)
def mmcv_conflict(report: Report, tables: Tables) -> Iterable[Finding]:
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
    fixes, _ = mmcv_fixes(report, tables, "then install one mmcv with ops", series=version_major(imported))
    every = " ".join(sorted(set(dists) | set(mmcv_dist_names(tables))))
    remove = [Fix(description="uninstall every mmcv distribution (run until pip finds none)",
                  commands=[f"{pip(report)} uninstall -y {every}"])]
    yield finding(CONFLICT, title, detail=detail,
                  evidence={"component": "mmcv", "distributions": names, "record_missing": missing,
                            "imported_version": imported},
                  fixes=remove + fixes)


@check(CONSUMER)
def mmcv_outside_consumer_range(report: Report, tables: Tables) -> Iterable[Finding]:
    version = mmcv_version(report)
    if version is None:
        return
    bad = [r for r in tables_query.consumer_ranges(tables, consumers(report, tables))
           if not tables_query.in_spec(version, r["mmcv"])]
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
            lowest = bad[0]["mmcv"].split(",")[0].lstrip("<>=!~ ")
            fixes += alternative_fixes(report, tables, mmcv_major=version_major(lowest))
    for row in bad:
        yield finding(CONSUMER, f"{row['package']} {row['installed']} accepts mmcv {row['mmcv']}, but mmcv {version} "
                                "is installed",
                      detail=f"`import {row['package'].replace('mmsegmentation', 'mmseg')}` raises AssertionError: "
                             f"MMCV=={version} is used but incompatible.",
                      evidence={"consumer": f"{row['package']} {row['installed']}", "accepts": row["mmcv"],
                                "mmcv": version, "source": row["source"]},
                      fixes=fixes)


@check(NO_WHEEL)
def mmcv_no_official_wheel(report: Report, tables: Tables) -> Iterable[Finding]:
    if comp(report, "mmcv") is None or mmcv_ops_ok(report) or report.mode != "full" \
            or not mmcv_ops_expected(report, tables):
        return
    if torch_unusable(report):
        return  # which mmcv fits can only be said of a torch that imports (ED003 / ED201 say what to repair)
    ver = torch_version(report)
    if ver is None:
        return
    cuda, py, os_ = torch_cuda(report), python_minor(report), os_name(report)
    if tables_query.mmcv_wheel_for(tables, ver, cuda, py, os_, consumers(report, tables)) is not None:
        return
    reasons = tables_query.why_no_mmcv_wheel(tables, ver, cuda, py, os_)
    series = mmcv_series(report)
    fixes = ([] if mmcv_fix_blocked(report) else [compat_fix(report)]) + alternative_fixes(report, tables,
                                                                                            mmcv_major=series)
    if series == 1:
        fixes += alternative_fixes(report, tables, mmcv_major=2, limit=1)
    yield finding(NO_WHEEL, f"no official mmcv wheel exists for torch {ver}, Python {py}, {os_}",
                  detail="; ".join(reasons) + ".",
                  evidence={"torch": ver, "torch.version.cuda": cuda, "python": report.python.version, "os": os_,
                            "index_checked": tables_query.mmcv_index_url(tables, ver, cuda)},
                  fixes=fixes)


def _cache_matches(wheel: dict[str, Any], abi: Optional[str]) -> bool:
    tags = str(wheel.get("python_tag") or "").split(".")
    return (abi is not None and abi in tags) or "py3" in tags


@check(STALE_CACHE)
def mmcv_stale_wheel_cache(report: Report, tables: Tables) -> Iterable[Finding]:
    cache = report.pip_cache
    if not isinstance(cache, dict):
        return
    wheels = [w for w in cache.get("wheels") or [] if isinstance(w, dict) and _cache_matches(w, report.python.abi_tag)]
    if not wheels:
        return
    status = load_status(report, "mmcv._ext")
    cause = load_cause(report, "mmcv._ext").get("kind")
    symbol_break = status in FAILED and cause in ("undefined_symbol", "missing_procedure")
    no_ops = comp(report, "mmcv") is not None and status == "missing" and mmcv_ops_expected(report, tables)
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
def mmcv_source_build_will_fail(report: Report, tables: Tables) -> Iterable[Finding]:
    if comp(report, "mmcv") is None or mmcv_ops_ok(report) or report.mode != "full" \
            or not mmcv_ops_expected(report, tables):
        return
    if torch_unusable(report):
        return  # a build needs a working torch first
    ver = torch_version(report)
    if ver is None:
        return
    cuda, py, os_ = torch_cuda(report), python_minor(report), os_name(report)
    if tables_query.mmcv_wheel_for(tables, ver, cuda, py, os_, consumers(report, tables)) is not None:
        return  # a wheel exists: nobody needs to build
    mmcv_ver = mmcv_version(report) or "2.2.0"
    setuptools = report.packages.get("setuptools")
    blockers = []
    for row in tables.rows("mmcv_build"):
        if "mmcv" in row and not tables_query.in_spec(mmcv_ver, row["mmcv"]):
            continue
        if "torch" in row and not tables_query.in_spec(ver, row["torch"]):
            continue
        if "python" in row and not tables_query.in_spec(report.python.version, row["python"]):
            continue
        if ("setuptools" in row and setuptools is not None
                and not tables_query.in_spec(setuptools.version, row["setuptools"])):
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
                  + ([] if mmcv_fix_blocked(report) else [compat_fix(report)]))
