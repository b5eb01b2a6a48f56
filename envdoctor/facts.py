"""The fact model: what the probes found, and the findings the checks derived.

These dataclasses *are* the JSON report (``docs/report.schema.json``). The
probe fills them, checks read them, renderers print them; nothing in here
judges anything. Changing a field incompatibly means bumping ``SCHEMA``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from envdoctor.fix_choice import ConsumerRange, FixChoice, PipInstall

SCHEMA = "envdoctor.report/1"
SCHEMA_PREFIX = "envdoctor.report/"

# Load statuses of one import attempt in an isolated process.
LOAD_STATUSES = ("ok", "missing", "import_error", "crash", "timeout", "skipped", "error")
# ...of which these mean "tried, and it failed" (missing = nothing to import, skipped = not tried)
FAILED = tuple(s for s in LOAD_STATUSES if s not in ("ok", "missing", "skipped"))


@dataclass
class LoadError:
    type: str = ""
    message: str = ""
    errno: Optional[int] = None
    winerror: Optional[int] = None
    signal: Optional[str] = None
    traceback: Optional[str] = None  # faulthandler stack for crashes, Python traceback otherwise


@dataclass
class LoadResult:
    """One import attempted in a subprocess of the target interpreter."""

    status: str = "skipped"
    seconds: Optional[float] = None
    error: Optional[LoadError] = None
    cause: Optional[str] = None  # a short classification, e.g. "missing_library", "undefined_symbol"
    stdout_bytes: int = 0  # the import printed this much (we never parse stdout)
    note: Optional[str] = None  # why a load was skipped, e.g. "not tried: `import torchvision` failed"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Component:
    """torch, torchvision, torchvision.ops, mmcv, mmcv._ext ...: static facts plus one load result."""

    name: str
    installed: bool = False
    version: Optional[str] = None
    distribution: Optional[str] = None
    location: Optional[str] = None
    facts: dict[str, Any] = field(default_factory=dict)
    load: Optional[LoadResult] = None


def package_dir_paths(comp: Component) -> list[str]:
    """The component's package directories on sys.path, first (imported) one first.

    The probe records dicts ({"path", "version", ...}); older reports hold plain paths."""
    out = []
    for d in comp.facts.get("package_dirs") or []:
        path = d.get("path") if isinstance(d, dict) else d
        if isinstance(path, str):
            out.append(path)
    return out


@dataclass
class GpuDevice:
    index: int
    name: str = ""
    compute_capability: Optional[str] = None  # "8.6"
    memory_total_mib: Optional[int] = None


@dataclass
class Gpu:
    source: str = "none"  # nvml | nvidia-smi | procfs | none
    driver_version: Optional[str] = None
    cuda_driver_version: Optional[str] = None  # the newest CUDA the driver supports, "12.7"
    devices: list[GpuDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a richer source was not used


@dataclass
class CudaToolkit:
    nvcc: Optional[str] = None
    version: Optional[str] = None
    cuda_home: Optional[str] = None
    cuda_home_source: Optional[str] = None  # CUDA_HOME | CUDA_PATH | nvcc | /usr/local/cuda


@dataclass
class Host:
    os: str = ""
    os_version: str = ""
    arch: str = ""
    glibc: Optional[str] = None
    libstdcxx: Optional[str] = None  # path of the libstdc++ the target would load
    libstdcxx_source: Optional[str] = None  # how it was found: target prefix | LD_LIBRARY_PATH | ld.so.cache | ...
    glibcxx: Optional[str] = None  # newest GLIBCXX_x.y.z version it provides
    cpu: str = ""
    cpu_count: Optional[int] = None
    memory_total_mib: Optional[int] = None


@dataclass
class PythonEnv:
    executable: str = ""
    selected_by: str = ""  # --python | VIRTUAL_ENV | CONDA_PREFIX | PATH | self
    version: str = ""
    implementation: str = ""
    abi_tag: Optional[str] = None
    platform_tag: Optional[str] = None
    prefix: str = ""
    base_prefix: str = ""
    is_venv: bool = False
    conda_prefix: Optional[str] = None
    site_packages: list[str] = field(default_factory=list)
    user_site: Optional[str] = None
    user_site_enabled: bool = False
    sys_path: list[str] = field(default_factory=list)
    selection_notes: list[str] = field(default_factory=list)  # why a candidate before it was passed over
    # what the interpreter printed on stderr before running any code of ours (a failing .pth line or
    # sitecustomize prints there on every start), and the start-up files that can cause it
    startup: dict[str, Any] = field(default_factory=dict)


@dataclass
class Package:
    name: str
    version: str = ""
    location: str = ""
    installer: Optional[str] = None
    requested: Optional[bool] = None
    direct_url: Optional[dict[str, Any]] = None
    wheel_tags: list[str] = field(default_factory=list)
    wheel_generator: Optional[str] = None
    top_level: list[str] = field(default_factory=list)
    compiled_files: int = 0  # .so/.pyd/.dll/.dylib listed in RECORD
    compiled_missing: list[str] = field(default_factory=list)  # of those, not on disk (bounded)
    record_files: int = 0
    record_missing: int = 0  # files RECORD lists that are not on disk (cached .pyc files not counted)
    missing_files: list[str] = field(default_factory=list)  # the first of them (bounded)
    shadowed_locations: list[str] = field(default_factory=list)  # the same distribution, later on sys.path


@dataclass
class Fix:
    description: str
    commands: list[str] = field(default_factory=list)
    strategy: Optional[str] = None  # what `envdoctor fix` would do: wheel | compat | torch
    # what exactly it installs/removes, from where and why: `fix` carries out this object (fix_choice.py)
    choice: Optional[FixChoice] = None


@dataclass(frozen=True)
class Finding:
    """Immutable: a post-pass (checks.grouping) builds new findings instead of changing these."""

    id: str
    name: str
    severity: str
    component: str
    title: str
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: tuple[Fix, ...] = ()
    # the id of the finding that states this one's root cause (set by checks.grouping; None = primary)
    explained_by: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.fixes, tuple):  # callers build them as lists
            object.__setattr__(self, "fixes", tuple(self.fixes))


@dataclass
class Redaction:
    kind: str
    count: int


@dataclass
class LoadProbes:
    """How the isolated imports ran: in forked children of one `import torch`, how many at a time."""

    fork: bool = False
    parallel: int = 1
    # fix's verification: its children were forked from the before-probe's `import torch`, kept for it
    reused: bool = False
    warmed: int = 0  # and the modules that process imported for it while pip ran (probe/held.py: the warm-up)


@dataclass
class FleetTag:
    """The node of `envdoctor fleet run` that wrote the report."""

    run: str = ""
    node: str = ""
    task: Optional[str] = None  # the launcher's task number, as it gave it


# What a run of envdoctor adds beside the facts. Reports of envdoctor <= 0.1.0 kept these under `extra`;
# loading such a report moves each to its field (when it has the field's JSON type).
MOVED_FROM_EXTRA: dict[str, tuple[type, ...]] = {
    "load_probes": (dict,), "pip_cache": (dict,), "fix_pending": (dict,), "fix_recovery": (dict,), "fix": (dict,),
    "build": (dict,), "fleet": (dict,), "redacted": (bool,), "trimmed": (list,), "packages_trimmed": (dict,),
    "packages_trimmed_count": (int,),
}


@dataclass(frozen=True)
class Report:
    """Immutable once built (the probe's results become one in probe.collect and classify.classified): a
    later stage that adds something (findings, a fix's result, redaction) builds a new Report with
    dataclasses.replace."""

    schema: str = SCHEMA
    envdoctor: str = ""
    created: str = ""
    mode: str = "full"  # full | quick
    host: Host = field(default_factory=Host)
    gpu: Gpu = field(default_factory=Gpu)
    cuda_toolkit: CudaToolkit = field(default_factory=CudaToolkit)
    python: PythonEnv = field(default_factory=PythonEnv)
    environment: dict[str, str] = field(default_factory=dict)  # allow-listed variables only
    packages: dict[str, Package] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    probe_errors: list[str] = field(default_factory=list)  # a probe that could not finish: facts are incomplete
    redactions: list[Redaction] = field(default_factory=list)
    load_probes: Optional[LoadProbes] = None  # None: no import was tried (--quick)
    pip_cache: Optional[dict[str, Any]] = None  # locally built wheels in pip's cache (probe/pip_cache.py)
    fix_pending: Optional[dict[str, Any]] = None  # an interrupted fix, read by `check` (fix/recover.py)
    fix_recovery: Optional[dict[str, Any]] = None  # what `fix` recovered before it planned
    fix: Optional[dict[str, Any]] = None  # `fix --format json`: the plan and its result
    build: Optional[dict[str, Any]] = None  # a build of `fix --strategy build` (build.BuildResult.report_extra)
    fleet: Optional[FleetTag] = None
    redacted: bool = False
    trimmed: list[str] = field(default_factory=list)  # what was cut to fit an issue or a fleet (render/markdown)
    packages_trimmed: Optional[dict[str, str]] = None  # name -> version of packages reduced to that
    packages_trimmed_count: Optional[int] = None  # how many packages were dropped altogether
    # kept for reports of envdoctor <= 0.1.0: what they held here that no field above took over
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.findings, tuple):  # callers build them as lists
            object.__setattr__(self, "findings", tuple(self.findings))

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        return _build(cls, _from_extra(data))


def _plain(value: Any) -> Any:
    """JSON's shapes: the immutable tuples of the model become lists (redaction and the schema walk lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _from_extra(data: Any) -> Any:
    """An old report's `extra` entries moved to the fields that hold them now."""
    extra = data.get("extra") if isinstance(data, dict) else None
    if not isinstance(extra, dict) or not any(k in MOVED_FROM_EXTRA for k in extra):
        return data
    data, extra = dict(data), dict(extra)
    for key, types in MOVED_FROM_EXTRA.items():
        value = extra.get(key)
        if key not in data and isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            data[key] = extra.pop(key)
    data["extra"] = extra
    return data


def _build(cls: Any, data: Any) -> Any:
    """Rebuild nested dataclasses from plain JSON data (unknown keys are ignored)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or not isinstance(data, dict):
        return data
    hints = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = hints.get(name)
        if f is None:
            continue
        kwargs[name] = _convert(_FIELD_TYPES.get((cls.__name__, name)), value)
    return cls(**kwargs)


def _convert(spec: Any, value: Any) -> Any:
    if spec is None or value is None:
        return value
    kind, inner = spec
    if kind == "one":
        return _build(inner, value)
    if kind == "list":
        return [_build(inner, v) for v in value]
    if kind == "dict":
        return {k: _build(inner, v) for k, v in value.items()}
    return value


# Nested types, spelled out once (string annotations are not resolved at run time).
_FIELD_TYPES: dict[tuple[str, str], tuple[str, Any]] = {
    ("Report", "host"): ("one", Host),
    ("Report", "gpu"): ("one", Gpu),
    ("Report", "cuda_toolkit"): ("one", CudaToolkit),
    ("Report", "python"): ("one", PythonEnv),
    ("Report", "packages"): ("dict", Package),
    ("Report", "components"): ("dict", Component),
    ("Report", "findings"): ("list", Finding),
    ("Report", "redactions"): ("list", Redaction),
    ("Report", "load_probes"): ("one", LoadProbes),
    ("Report", "fleet"): ("one", FleetTag),
    ("Gpu", "devices"): ("list", GpuDevice),
    ("Component", "load"): ("one", LoadResult),
    ("LoadResult", "error"): ("one", LoadError),
    ("Finding", "fixes"): ("list", Fix),
    ("Fix", "choice"): ("one", FixChoice),
    ("FixChoice", "installs"): ("list", PipInstall),
    ("FixChoice", "satisfies"): ("list", ConsumerRange),
}
