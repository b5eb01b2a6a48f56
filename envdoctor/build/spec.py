"""Facts -> what to build: which mmcv, CPU or CUDA ops, for which GPUs, with how many jobs.

Pure: reads the Report, the rule tables and the build host's facts; runs nothing.
Every decision a user gets wrong by hand is made here from a fact, and the reason is kept
(`why`) so that the plan can show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from envdoctor import tables_query
from envdoctor.fact_readers import consumers, torch_cuda, torch_version
from envdoctor.facts import Report
from envdoctor.probe.buildhost import BuildHost

if TYPE_CHECKING:
    from envdoctor.rules import Tables

# Memory budget of one compile job (MiB). CPU: in the real mmcv 2.2.0 build against torch 2.13 headers
# (-O3 -g, bench/bench_build.py) the largest single process peaked at 2712 MiB, most units stay near 1 GiB;
# the budget is the worst unit, since any two may run together. CUDA (nvcc + cicc per arch) is a guess
# (UNVERIFIED: no GPU toolchain build was run here).
JOB_MIB = {"cpu": 3000, "cuda": 4000}
# Core-seconds per compile unit: that build used 1525 s of user CPU for 77 units (~20 per unit); the
# testbed's mostly idle build took 15 min 35 s with 2 jobs (~24). CUDA per arch is a guess (UNVERIFIED).
UNIT_CORE_SECONDS = {"cpu": 22.0, "cuda": 60.0}
# Compile units when the source is not at hand yet (mmcv 2.2.0 CPU build: 77, counted in its ninja log).
DEFAULT_UNITS = 77
# Disk a build needs per compile unit (objects with -g, the linked library, the wheel): the former flat 2 GiB
# budget for mmcv 2.2.0's 77 CPU units. Conservative: a real mmcv 2.2.0 CPU build stopped at 34/77 units held
# 141 MiB in its TMPDIR (~4 MiB of objects per unit); the link and the wheel at the end were not measured.
DISK_MIB_PER_UNIT = 27
# setuptools that still ships pkg_resources (research/mmcv.md 4.3.1: 80.9.0 and 81.0.0 have it, 82 not;
# "<81" also avoids 81's deprecation warning turning into an error under -W error).
BUILD_REQUIREMENTS = ("setuptools<81", "wheel", "ninja")


@dataclass
class BuildSpec:
    package: str  # distribution that gets built: "mmcv" (2.x) | "mmcv-full" (1.x)
    version: str
    python: str  # the target interpreter: the build runs with it, against its torch
    python_tag: str  # "cp311"
    platform_tag: str  # "linux_x86_64"
    torch_version: str
    torch_git: Optional[str]
    torch_cuda: Optional[str]  # torch.version.cuda, None = CPU build of torch
    cxx11_abi: Optional[bool]
    device: str  # "cuda" | "cpu": which kernels get compiled
    arch_list: list[str] = field(default_factory=list)  # TORCH_CUDA_ARCH_LIST entries, "8.6"
    cuda_home: Optional[str] = None
    nvcc_version: Optional[str] = None
    compiler: Optional[str] = None
    msvc_install: Optional[str] = None  # Windows: the Visual Studio install whose vcvars64.bat the build runs in
    max_jobs: int = 1
    units: int = DEFAULT_UNITS
    estimated_seconds: int = 0
    requirements: tuple[str, ...] = BUILD_REQUIREMENTS
    why: dict[str, str] = field(default_factory=dict)  # decision -> the fact it rests on
    blockers: list[str] = field(default_factory=list)  # it cannot be built as asked; each says what to do
    notes: list[str] = field(default_factory=list)

    @property
    def wheel_name(self) -> str:
        return self.package.replace("-", "_")

    def build_env(self) -> dict[str, str]:
        """The variables mmcv's setup.py and torch's cpp_extension read."""
        env = {"MMCV_WITH_OPS": "1", "MAX_JOBS": str(self.max_jobs)}
        if self.device == "cuda":
            env["FORCE_CUDA"] = "1"
            if self.cuda_home:
                env["CUDA_HOME"] = self.cuda_home
            if self.arch_list:
                env["TORCH_CUDA_ARCH_LIST"] = ";".join(self.arch_list)
        else:
            # a visible GPU would make setup.py compile CUDA kernels; --cpu means CPU kernels only
            env["FORCE_CUDA"] = "0"
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env


def _sm_to_arch(entry: str) -> Optional[str]:
    m = re.match(r"^sm_(\d+)(\d)([a-z]?)$", entry)
    return f"{m.group(1)}.{m.group(2)}" if m and not m.group(3) else None


def arch_list(report: Report) -> tuple[list[str], str]:
    """TORCH_CUDA_ARCH_LIST: the GPUs NVML sees, else torch's own compiled list."""
    caps = sorted({d.compute_capability for d in report.gpu.devices if d.compute_capability},
                  key=tables_query.vkey)
    if caps:
        return caps, f"the GPUs on this machine ({report.gpu.source}: {', '.join(caps)})"
    torch = report.components.get("torch")
    listed = (torch.facts.get("runtime") or {}).get("arch_list") if torch else None
    if isinstance(listed, list):
        archs = sorted({a for a in (_sm_to_arch(str(e)) for e in listed) if a}, key=tables_query.vkey)
        if archs:
            return archs, "no GPU visible: torch's own list (torch.cuda.get_arch_list())"
    return [], "no GPU visible and torch reports no arch list"


def max_jobs(host: BuildHost, device: str) -> tuple[int, str]:
    per_job = JOB_MIB[device]
    if host.mem_available_mib is None:
        return max(1, host.cores), f"{host.cores} cores (available memory unknown)"
    by_mem = max(1, host.mem_available_mib // per_job)
    jobs = max(1, min(host.cores, by_mem))
    return jobs, (f"{host.cores} cores, {host.mem_available_mib} MiB available / ~{per_job} MiB per "
                  f"{device.upper()} compile job")


def _blocked_by_table(tables: Tables, version: str, torch: str, python: str) -> list[dict[str, Any]]:
    """[[mmcv_build]] rows that apply to this version and that the recipe does not already avoid."""
    out = []
    for row in tables.rows("mmcv_build"):
        if row["kind"] in ("setuptools-no-pkg-resources", "isolated-build-no-torch"):
            continue  # the overlay (setuptools<81) and --no-build-isolation avoid these two
        if "mmcv" in row and not tables_query.in_spec(version, row["mmcv"]):
            continue
        if "torch" in row and not tables_query.in_spec(torch, row["torch"]):
            continue
        if "python" in row and not tables_query.in_spec(python, row["python"]):
            continue
        out.append(row)
    return out


def choose_version(report: Report, tables: Tables, pinned: Optional[str] = None) -> tuple[str, str, str]:
    """(package, version, why): the newest mmcv inside every installed consumer's range whose
    source builds against this torch; the installed series (mmcv-full = 1.x) is kept."""
    torch = torch_version(report) or ""
    series = 1 if "mmcv-full" in report.packages else None
    if pinned:
        return ("mmcv-full" if pinned.startswith("1.") else "mmcv"), pinned, "pinned"
    known: set[str] = set()
    for row in tables.rows("mmcv_wheels"):
        known.update(row["mmcv"])
    ranges = tables_query.consumer_ranges(tables, consumers(report, tables))
    ok = []
    for ver in known:
        v = tables_query.parse_version(ver)
        if v is None or (series is not None and v.major != series) or (series is None and v.major < 2):
            continue
        if not all(tables_query.in_spec(ver, r["mmcv"]) for r in ranges):
            continue
        # versions whose source cannot compile against this torch at all (C++ standard) are skipped
        if any(r["kind"].startswith("cxx14") for r in _blocked_by_table(tables, ver, torch, report.python.version)):
            continue
        ok.append(ver)
    if not ok:
        raise LookupError("no mmcv release fits the installed consumers' ranges and builds against torch "
                          f"{torch} ({', '.join(r['package'] + ' ' + r['mmcv'] for r in ranges) or 'no consumers'})")
    best = max(ok, key=tables_query.vkey)
    why = "newest release" + (" inside " + ", ".join(f"{r['package']} {r['installed']} ({r['mmcv']})"
                                                     for r in ranges) if ranges else "")
    return ("mmcv-full" if best.startswith("1.") else "mmcv"), best, why


def decide(report: Report, tables: Tables, host: BuildHost, *, cpu: bool = False, version: Optional[str] = None,
           units: Optional[int] = None) -> BuildSpec:
    """What `fix --strategy build` would build here; `blockers` says why it cannot, if it cannot."""
    torch = torch_version(report)
    if torch is None:
        raise LookupError("torch is not installed in the target: mmcv's ops are built against it")
    tcomp = report.components["torch"]
    vpy = tcomp.facts.get("version_py") or {}
    runtime = tcomp.facts.get("runtime") or {}
    package, ver, why_version = choose_version(report, tables, version)
    py = report.python
    cuda = torch_cuda(report)
    spec = BuildSpec(
        package=package, version=ver, python=py.executable,
        python_tag=(py.abi_tag or "cp" + "".join(py.version.split(".")[:2])).split("-")[0],
        platform_tag=py.platform_tag or "", torch_version=torch, torch_git=vpy.get("git_version"),
        torch_cuda=cuda, cxx11_abi=runtime.get("cxx11_abi") if isinstance(runtime.get("cxx11_abi"), bool) else None,
        device="cpu" if cpu or not cuda else "cuda", compiler=host.cxx_version,
    )
    spec.why["version"] = why_version
    for row in _blocked_by_table(tables, ver, torch, py.version):
        spec.blockers.append(f"{row['title']}; {row.get('fix', '')} ({row['source']})")
    if cpu:
        spec.why["device"] = "--cpu: CPU kernels only"
    elif not cuda:
        spec.why["device"] = f"torch {torch} is a CPU build"
    else:
        spec.why["device"] = f"torch {torch} uses CUDA {cuda}"
        _cuda_toolkit(report, spec, cuda)
        _host_compiler(tables, spec)
    spec.max_jobs, spec.why["jobs"] = max_jobs(host, spec.device)
    spec.units = units or DEFAULT_UNITS
    per_unit = UNIT_CORE_SECONDS[spec.device] * (max(1, len(spec.arch_list)) if spec.device == "cuda" else 1)
    spec.estimated_seconds = int(spec.units * per_unit / spec.max_jobs)
    spec.why["time"] = (f"{spec.units} compile units x ~{per_unit:g} core-seconds / {spec.max_jobs} jobs"
                        + ("" if units else " (unit count of mmcv 2.2.0's CPU build; the source is not read yet)"))
    if report.host.os.lower() == "windows":
        if host.msvc is not None and not host.msvc.lower().endswith("cl.exe"):
            # cl.exe is not on PATH, vswhere found an install: the build runs in that install's x64 environment
            spec.msvc_install = host.msvc
            spec.why["compiler"] = f"MSVC of {host.msvc} (vswhere), in the environment its vcvars64.bat sets up"
        if host.msvc is None:
            spec.blockers.append("MSVC is missing: no cl.exe on PATH and vswhere finds no Visual Studio with the C++ "
                                 "build tools; install Visual Studio Build Tools with the 'Desktop development "
                                 "with C++' workload (MSVC v14x, Windows SDK), then run again")
    elif host.cxx is None:
        spec.blockers.append("no C++ compiler (c++/g++) on PATH: install one (Debian/Ubuntu: apt install g++)")
    need = max(256, spec.units * DISK_MIB_PER_UNIT)
    if host.disk_free_mib is not None and host.disk_free_mib < need:
        spec.blockers.append(f"only {host.disk_free_mib} MiB free where the build runs; it needs about {need} MiB "
                             f"({spec.units} compile units): free some space, or set TMPDIR to a larger disk")
    return spec


def _cuda_toolkit(report: Report, spec: BuildSpec, cuda: str) -> None:
    tk = report.cuda_toolkit
    spec.arch_list, spec.why["arch_list"] = arch_list(report)
    if not tk.nvcc or not tk.version:
        spec.blockers.append(f"no nvcc found: install the CUDA {cuda} toolkit and set CUDA_HOME, or build CPU "
                             "kernels only with --cpu")
        return
    spec.cuda_home, spec.nvcc_version = tk.cuda_home, tk.version
    if tk.version.split(".")[0] != cuda.split(".")[0]:
        spec.blockers.append(f"nvcc {tk.version} ({tk.cuda_home}) is another CUDA major than torch's {cuda}: "
                             f"torch.utils.cpp_extension refuses it; install the CUDA {cuda} toolkit and point "
                             "CUDA_HOME at it, or build CPU kernels only with --cpu")
    elif tk.version != tables_query.minor_of(cuda):
        spec.notes.append(f"nvcc {tk.version} and torch's CUDA {cuda} differ in the minor version: torch only "
                          "warns, the build usually works")
    spec.why["cuda_home"] = f"nvcc {tk.version} from {tk.cuda_home_source or 'PATH'}"


def _host_compiler(tables: Tables, spec: BuildSpec) -> None:
    """Refuse a gcc newer than this nvcc accepts ([[nvcc_host_compiler]]), before a build that would fail."""
    m = re.match(r"^GCC (\d+)", spec.compiler or "")
    if not m or not spec.nvcc_version:
        return
    row = next((r for r in tables.rows("nvcc_host_compiler") if r["cuda"] == spec.nvcc_version), None)
    if row is not None and int(m.group(1)) > row["gcc_max"]:
        spec.blockers.append(f"nvcc {spec.nvcc_version} accepts gcc <= {row['gcc_max']}, the compiler here is "
                             f"{spec.compiler}: install gcc-{row['gcc_max']} and g++-{row['gcc_max']} and set CC/CXX "
                             f"to them, or use a newer CUDA toolkit ({row['source']})")
