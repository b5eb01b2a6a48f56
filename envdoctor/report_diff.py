"""What differs between two reports, most important first. Pure: two Reports in, a Diff out.

Order of sections (the order a person debugging a broken install cares about):
driver/CUDA, torch build, python, load (did each extension import), findings,
packages, environment, other. Within a section, the worse changes come first.
A change is "worse" when a component that imported (or was absent) now fails,
or a new error-level finding appears; `envdoctor diff` exits 1 on such a change.
What cannot be compared (a --quick report has no load results, a trimmed report
has no full package list) is listed as such, never reported as "no difference".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from envdoctor.fact_readers import load_message, load_status, runtime, version_py
from envdoctor.facts import FAILED, Component, Finding, Report

SECTIONS = ("driver/CUDA", "torch build", "python", "load", "findings", "packages", "environment", "other")
COMPONENT_ORDER = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")
# Packages the checks judge: listed before the others and kept in full when a report is trimmed.
KEY_PACKAGES = re.compile(r"^(torch.*|mmcv.*|mmengine|mmdet.*|mmseg.*|mmpose|mmagic|mmedit|mmocr|mmyolo|mmpretrain"
                          r"|mmcls|mmaction2|openmim|nvidia-.*|triton|numpy|pip|setuptools|wheel|opencv.*"
                          r"|envdoctor|xformers|cupy.*|onnxruntime.*)$")
_CUDA_ENV = re.compile(r"^(CUDA_.*|NVIDIA_.*|LD_LIBRARY_PATH|TORCH_CUDA_ARCH_LIST|PATH\(cuda entries\)|FORCE_CUDA)$")


@dataclass
class Change:
    section: str
    key: str
    a: Any
    b: Any
    direction: str  # worse | better | changed | added | removed
    note: str = ""


@dataclass
class Side:
    label: str
    created: str
    envdoctor: str
    mode: str
    python: str
    trimmed: list[str] = field(default_factory=list)


@dataclass
class Diff:
    a: Side
    b: Side
    changes: list[Change] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def worse(self) -> bool:
        return any(c.direction == "worse" for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "envdoctor.diff/1", "a": asdict(self.a), "b": asdict(self.b), "worse": self.worse,
                "changes": [asdict(c) for c in self.changes], "not_compared": list(self.not_compared)}


def _side(report: Report, label: str) -> Side:
    return Side(label=label, created=report.created, envdoctor=report.envdoctor, mode=report.mode,
                python=report.python.executable, trimmed=[str(t) for t in report.trimmed or []])


def _rank(status: Optional[str]) -> int:
    """How bad one load status is: ok < absent/not tried < failed."""
    if status == "ok":
        return 0
    if status in FAILED:
        return 2
    return 1


class _Collector:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def value(self, section: str, key: str, a: Any, b: Any, direction: str = "changed", note: str = "") -> None:
        if a != b:
            self.changes.append(Change(section, key, a, b, direction, note))


def _torch_build(c: Optional[Component]) -> dict[str, Any]:
    if c is None or not c.installed:
        return {"installed": False}
    # facts are free-form in the schema (each probe adds its own): read them as what they turn out to be
    vp, rt = version_py(c), runtime(c)
    out: dict[str, Any] = {"version": c.version, "cuda": vp.get("cuda", rt.get("cuda"))}
    for key in ("cxx11_abi", "debug", "cudnn", "arch_list", "cuda_available", "hip"):
        if key in rt:
            out[key] = rt[key]
    return out


def _devices(r: Report) -> list[str]:
    return [f"{d.name} (sm {d.compute_capability or '?'})" for d in r.gpu.devices]


def _package_versions(r: Report) -> dict[str, str]:
    out = {name: p.version for name, p in r.packages.items()}
    trimmed = r.packages_trimmed
    if isinstance(trimmed, dict):  # a report trimmed to fit an issue still has every name and version
        out.update({str(k): str(v) for k, v in trimmed.items() if k not in out})
    return out


def _finding_key(f: Finding) -> tuple[str, str]:
    return (f.id, f.component)


def compare(a: Report, b: Report, label_a: str = "A", label_b: str = "B") -> Diff:
    diff = Diff(a=_side(a, label_a), b=_side(b, label_b))
    col = _Collector()
    quick = [lbl for r, lbl in ((a, label_a), (b, label_b)) if r.mode == "quick"]

    # driver/CUDA
    if quick:
        diff.not_compared.append(f"NVIDIA driver and GPUs: {' and '.join(quick)} made with --quick")
    else:
        col.value("driver/CUDA", "driver", a.gpu.driver_version, b.gpu.driver_version)
        col.value("driver/CUDA", "driver CUDA version", a.gpu.cuda_driver_version, b.gpu.cuda_driver_version)
        col.value("driver/CUDA", "GPUs", _devices(a), _devices(b))
        col.value("driver/CUDA", "CUDA toolkit (nvcc)", a.cuda_toolkit.version, b.cuda_toolkit.version)
        col.value("driver/CUDA", "CUDA_HOME", a.cuda_toolkit.cuda_home, b.cuda_toolkit.cuda_home)
    for name in sorted(set(a.environment) | set(b.environment)):
        section = "driver/CUDA" if _CUDA_ENV.match(name) else "environment"
        col.value(section, f"${name}", a.environment.get(name), b.environment.get(name))

    # torch build
    ta, tb = _torch_build(a.components.get("torch")), _torch_build(b.components.get("torch"))
    for key in [k for k in ta if k in tb] + [k for k in tb if k not in ta] + [k for k in ta if k not in tb]:
        col.value("torch build", f"torch {key}", ta.get(key), tb.get(key))

    # python
    for key in ("version", "implementation", "abi_tag", "platform_tag"):
        col.value("python", key, getattr(a.python, key), getattr(b.python, key))

    # load status of each component
    names = [n for n in COMPONENT_ORDER if n in a.components or n in b.components]
    names += sorted((set(a.components) | set(b.components)) - set(names))
    if quick:
        diff.not_compared.append(f"whether components import: {' and '.join(quick)} made with --quick")
    else:
        load_changes = []
        for name in names:
            sa, sb = load_status(a, name), load_status(b, name)
            ea, eb = load_message(a, name, limit=300), load_message(b, name, limit=300)
            if sa != sb:
                ra, rb = _rank(sa), _rank(sb)
                direction = "worse" if rb > ra else "better" if rb < ra else "changed"
                load_changes.append(Change("load", name, sa, sb, direction, eb or (f"was: {ea}" if ea else "")))
            elif ea != eb and sa in FAILED:
                load_changes.append(Change("load", name, ea, eb, "changed", "a different error"))
        # failures first (the reason someone runs diff), then the rest in component order
        load_changes.sort(key=lambda c: {"worse": 0, "better": 1}.get(c.direction, 2))
        col.changes.extend(load_changes)

    # findings
    fa = {_finding_key(f): f for f in a.findings}
    fb = {_finding_key(f): f for f in b.findings}
    severity = {"error": 0, "warning": 1, "info": 2}
    found: list[Change] = []
    for fkey, f in fb.items():
        if fkey not in fa:
            found.append(Change("findings", f.id, None, f.severity, "worse" if f.severity == "error" else "added",
                                f.title))
        elif fa[fkey].severity != f.severity:
            worse = severity.get(f.severity, 3) < severity.get(fa[fkey].severity, 3)
            found.append(Change("findings", f.id, fa[fkey].severity, f.severity,
                                "worse" if worse and f.severity == "error" else "changed", f.title))
    for fkey, f in fa.items():
        if fkey not in fb:
            found.append(Change("findings", f.id, f.severity, None, "better" if f.severity == "error" else "removed",
                                f.title))
    found.sort(key=lambda c: ({"worse": 0, "added": 1, "changed": 2}.get(c.direction, 3),
                              severity.get(c.b or c.a, 3), c.key))
    col.changes.extend(found)

    # packages
    pa, pb = _package_versions(a), _package_versions(b)
    for r, lbl in ((a, label_a), (b, label_b)):
        if r.packages_trimmed_count:
            diff.not_compared.append(f"packages: {lbl} lists only {len(r.packages)} of its packages "
                                     "(trimmed to fit an issue)")
    pkg_changes = []
    for name in set(pa) | set(pb):
        va, vb = pa.get(name), pb.get(name)
        if va != vb:
            direction = "added" if va is None else "removed" if vb is None else "changed"
            pkg_changes.append(Change("packages", name, va, vb, direction))
    pkg_changes.sort(key=lambda c: (not KEY_PACKAGES.match(c.key), c.key))
    col.changes.extend(pkg_changes)

    # other: where things are, and the machine
    col.value("other", "python executable", a.python.executable, b.python.executable)
    col.value("other", "python prefix", a.python.prefix, b.python.prefix)
    col.value("other", "selected by", a.python.selected_by, b.python.selected_by)
    col.value("other", "OS", f"{a.host.os} {a.host.os_version} {a.host.arch}".strip(),
              f"{b.host.os} {b.host.os_version} {b.host.arch}".strip())
    col.value("other", "glibc", a.host.glibc, b.host.glibc)
    col.value("other", "GLIBCXX", a.host.glibcxx, b.host.glibcxx)
    col.value("other", "envdoctor", a.envdoctor, b.envdoctor)
    col.value("other", "probe errors", a.probe_errors, b.probe_errors)

    order = {s: i for i, s in enumerate(SECTIONS)}
    # stable sort: the order inside each section, as built above, is kept
    diff.changes = sorted(col.changes, key=lambda c: order[c.section])
    return diff
