"""ED1xx: the NVIDIA driver and the GPU against torch's CUDA build."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import torch_choice, torch_fix
from envdoctor.fact_readers import comp, os_name, runtime, torch_cuda, torch_version
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

NVIDIA_DOWNLOAD = "https://www.nvidia.com/Download/index.aspx"

NO_DRIVER = Rule(
    id="ED101", name="cuda-build-without-driver", severity="warning", component="gpu",
    summary="torch is a CUDA build but the machine has no NVIDIA driver: it can only run on the CPU.",
    rationale="A +cuXY build of torch ships gigabytes of CUDA libraries and needs the NVIDIA driver (libcuda / "
    "nvcuda.dll) to use a GPU. Without one, torch.cuda.is_available() is False and any CUDA call raises "
    "'Found no NVIDIA driver on your system'. Either the driver is missing, or a CPU build is what you want.",
    evidence=("gpu.source", "gpu.notes", "components.torch.facts.version_py.cuda"),
    tables=("cuda_compat", "cuda_driver"),
    fixes=("install the NVIDIA driver (at least the family floor of torch's CUDA major)",
           "or install the CPU build of the same torch version"),
)

DRIVER_TOO_OLD = Rule(
    id="ED102", name="driver-too-old", severity="error", component="gpu",
    summary="The NVIDIA driver is older than torch's CUDA build needs (minor-version compatibility considered).",
    rationale="From CUDA 11 on, a toolkit runs on any driver of its major's family floor (minor-version "
    "compatibility: 11.x >= 450.80.02, 12.x >= 525.60.13, 13.x >= 580.65.06), with a limited feature set and no "
    "PTX JIT below the exact release's driver. Before CUDA 11 the exact release's driver is required. A driver "
    "whose CUDA version is below torch's CUDA major cannot run it: torch says 'The NVIDIA driver on your system "
    "is too old'.",
    evidence=("gpu.driver_version", "gpu.cuda_driver_version", "components.torch.facts.version_py.cuda"),
    tables=("cuda_driver", "cuda_compat", "driver_branch", "torch_release"),
    fixes=("update the NVIDIA driver", "or install a torch build for a CUDA the driver supports"),
)

ARCH = Rule(
    id="ED103", name="gpu-arch-not-compiled", severity="error", component="gpu",
    summary="A GPU's compute capability is not among the architectures torch was compiled for.",
    rationale="torch's CUDA kernels are compiled for a list of SM architectures (plus PTX for some). SASS runs on "
    "GPUs of the same major with an equal or newer minor; PTX can be JIT-compiled for newer GPUs. A GPU outside "
    "the list fails with 'no kernel image is available for execution on the device' (e.g. an RTX 50xx, sm_120, "
    "with a cu124 build; or a Pascal/Maxwell GPU with a cu128+ build that dropped sm_50-sm_60).",
    evidence=("gpu.devices[].compute_capability", "components.torch.facts.runtime.arch_list"),
    tables=("torch_arch", "sm_compat", "torch_release"),
    fixes=("install a torch build whose CUDA variant includes the GPU's architecture",),
)


def _driver_cuda(report: Report, tables: Tables) -> tuple[Optional[str], str]:
    """The newest CUDA the driver supports, and where that came from."""
    gpu = report.gpu
    if gpu.cuda_driver_version:
        return gpu.cuda_driver_version, f"reported by {gpu.source}"
    derived = tables_query.driver_cuda_from_branch(tables, gpu.driver_version)
    return derived, "derived from the driver branch"


def _cuda_builds_for_driver(tables: Tables, torch_ver: str, driver_cuda: Optional[str]) -> list[str]:
    """CUDA variants of this torch release that the driver can run, newest first."""
    rel = tables_query.torch_release(tables, torch_ver)
    if rel is None:
        return []
    builds = list(rel.get("cuda", [])) + list(rel.get("cuda_experimental", []))
    return sorted(builds, key=tables_query.vkey, reverse=True)


def _torch_reinstall(report: Report, tables: Tables, ver: str, cuda: Optional[str]) -> Fix:
    pub, tag = tables_query.public(ver), tables_query.cuda_tag(cuda)
    choice = torch_choice(report, tables, "gpu", ver, cuda, f"the {tag} build of torch {pub} runs on this machine",
                          with_torchvision=comp(report, "torchvision") is not None)
    return torch_fix(choice, f"install the {tag} build of torch {pub} (changes torch: applied by `envdoctor fix` "
                             "only with --allow-torch-change)")


@check(NO_DRIVER)
def cuda_build_without_driver(report: Report, tables: Tables) -> Iterable[Finding]:
    cuda = torch_cuda(report)
    ver = torch_version(report)
    if report.mode != "full" or not cuda or ver is None or report.gpu.source != "none":
        return
    fixes = [
        Fix(description=f"if this machine has an NVIDIA GPU: install its driver ({NVIDIA_DOWNLOAD}); "
                        f"CUDA {cuda} needs {_floor_text(tables, cuda, os_name(report))}"),
        _torch_reinstall(report, tables, ver, None),
    ]
    fixes[1].description = "if no GPU is meant to be used: " + fixes[1].description
    yield finding(NO_DRIVER, f"torch {ver} is a CUDA {cuda} build, but no NVIDIA driver was found: it runs on the "
                             "CPU only", detail="torch.cuda.is_available() is False; CUDA calls raise 'Found no "
                             "NVIDIA driver on your system'.",
                  evidence={"torch": ver, "torch.version.cuda": cuda, "gpu.source": report.gpu.source,
                            "gpu.notes": report.gpu.notes},
                  fixes=fixes)


def _floor_text(tables: Tables, cuda: str, os_: str) -> str:
    row = tables_query.compat_row(tables, cuda)
    col = "windows" if os_ == "windows" else "linux"
    exact = tables_query.driver_floor(tables, cuda, os_)
    if row is not None and row.get("minor_compat") and row.get(col):
        return f"driver >= {row[col]} (CUDA {row['major']}.x minor-version compatibility)"
    if exact:
        return f"driver >= {exact[0]}"
    return "a driver that supports it"


@check(DRIVER_TOO_OLD)
def driver_too_old(report: Report, tables: Tables) -> Iterable[Finding]:
    cuda = torch_cuda(report)
    ver = torch_version(report)
    gpu = report.gpu
    drv = tables_query.driver_version_tuple(gpu.driver_version)
    if not cuda or ver is None or gpu.source == "none" or drv is None:
        return
    os_ = os_name(report)
    col = "windows" if os_ == "windows" else "linux"
    driver_cuda, how = _driver_cuda(report, tables)
    major = int(cuda.split(".")[0])
    row = tables_query.compat_row(tables, cuda)
    exact = tables_query.driver_floor(tables, cuda, os_)
    evidence: dict[str, Any] = {"driver": gpu.driver_version, "driver_cuda": driver_cuda, "driver_cuda_from": how,
                                "torch": ver, "torch.version.cuda": cuda, "os": os_}
    problem = None
    severity = "error"
    dcv = tables_query.parse_version(driver_cuda)
    if dcv is not None and dcv.major < major:
        problem = (f"the driver supports CUDA up to {driver_cuda}, torch {ver} needs CUDA {major}.x")
    elif row is not None and row.get("minor_compat"):
        floor = row.get(col)
        if floor and drv < (tables_query.driver_version_tuple(floor) or (0,)):
            problem = f"driver {gpu.driver_version} is below CUDA {major}.x's floor {floor}"
            evidence["required"] = floor
            evidence["source"] = row["source"]
        elif (exact and drv < (tables_query.driver_version_tuple(exact[0]) or (0,))
              and (dcv is None or dcv < tables_query.vkey(cuda))):
            problem = (f"driver {gpu.driver_version} runs CUDA {cuda} only through minor-version compatibility "
                       f"(CUDA {cuda}'s own driver is >= {exact[0]}): a limited feature set, and PTX JIT fails")
            severity = "warning"
            evidence["required"] = exact[0]
            evidence["source"] = exact[1]
    elif exact and drv < (tables_query.driver_version_tuple(exact[0]) or (0,)):
        problem = f"CUDA {cuda} has no minor-version compatibility: it needs driver >= {exact[0]}"
        evidence["required"] = exact[0]
        evidence["source"] = exact[1]
    if problem is None:
        return
    fixes = [Fix(description=f"update the NVIDIA driver to >= {evidence.get('required') or 'the one of CUDA ' + cuda} "
                             f"({NVIDIA_DOWNLOAD})")]
    builds = [b for b in _cuda_builds_for_driver(tables, ver, driver_cuda)
              if tables_query.driver_runs(tables, gpu.driver_version, driver_cuda, b, os_)]
    if builds:
        fixes.append(_torch_reinstall(report, tables, ver, builds[0]))
    yield finding(DRIVER_TOO_OLD, f"NVIDIA driver {gpu.driver_version} is too old for torch {ver} (CUDA {cuda})",
                  detail=problem, evidence=evidence, fixes=fixes, severity=severity)


@check(ARCH)
def gpu_arch_not_compiled(report: Report, tables: Tables) -> Iterable[Finding]:
    cuda = torch_cuda(report)
    ver = torch_version(report)
    if not cuda or ver is None or not report.gpu.devices:
        return
    arch = runtime(comp(report, "torch")).get("arch_list")
    source = "torch.cuda.get_arch_list()"
    if not isinstance(arch, list) or not arch:
        row = tables_query.arch_for(tables, ver, cuda, os_name(report))
        if row is None:
            return
        arch = list(row["arch"])
        source = row["source"]
    # SASS only, as torch's own check (_check_cubins): PTX-only coverage fails in practice (sm_120 on cu124)
    arch = [a for a in arch if isinstance(a, str) and a.startswith("sm_")]
    for dev in report.gpu.devices:
        cc = dev.compute_capability
        if not cc or tables_query.runs_on(tables, cc, arch):
            continue
        sm = "sm_" + cc.replace(".", "")
        fixes = []
        for build in _builds_with_arch(tables, ver, cc, os_name(report), report.gpu.driver_version,
                                       report.gpu.cuda_driver_version):
            fixes.append(_torch_reinstall(report, tables, build[0], build[1]))
            break
        if not fixes:
            fixes.append(Fix(description=f"no official torch build in the tables includes {sm}: see "
                                         "https://pytorch.org/get-started/locally/ or build torch with "
                                         f"TORCH_CUDA_ARCH_LIST={cc}"))
        yield finding(ARCH, f"GPU {dev.index} {dev.name} ({sm}) is not among the architectures torch {ver} was "
                            "compiled for",
                      detail="CUDA kernels fail with 'no kernel image is available for execution on the device'.",
                      evidence={"gpu": dev.name, "compute_capability": cc, "arch_list": arch,
                                "arch_list_from": source, "torch": ver},
                      fixes=fixes)


def _builds_with_arch(tables: Tables, torch_ver: str, cc: str, os_: str, driver: Optional[str],
                      driver_cuda: Optional[str]) -> list[tuple[str, str]]:
    """(torch version, CUDA) of official builds that run on this GPU: this torch release first, then newer."""
    out = []
    releases = sorted(tables.rows("torch_release"), key=lambda r: tables_query.vkey(r["torch"]), reverse=True)
    this = tables_query.minor_of(torch_ver)
    releases.sort(key=lambda r: r["torch"] != this)  # this release first
    for rel in releases:
        if tables_query.vkey(rel["torch"]) < tables_query.vkey(this):
            continue
        version = torch_ver if rel["torch"] == this else tables_query.torch_patch(tables, rel["torch"])
        for cu in sorted(rel.get("cuda", []) + rel.get("cuda_experimental", []),
                         key=tables_query.vkey, reverse=True):
            if not tables_query.driver_runs(tables, driver, driver_cuda, cu, os_):
                continue
            row = tables_query.arch_for(tables, version, cu, os_)
            # suggest only builds with native (SASS) code for the GPU: real sm_120 reports show PTX-only
            # builds (cu124's 9.0+PTX) failing, and torch's own check compares SASS majors
            if row and tables_query.runs_on(tables, cc, list(row["arch"])):
                out.append((version, cu))
    return out
