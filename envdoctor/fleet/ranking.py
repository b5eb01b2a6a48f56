"""How one fingerprint differs from another, ranked by `envdoctor diff`'s own rules (envdoctor.report_diff).

A fingerprint is turned back into a minimal Report holding only its fields, so compare() ranks
fleet differences exactly as it ranks two reports: a component that now fails to import, or a new
error-level finding, is "worse"; that is what makes an outlier matter (exit 1).
"""

from __future__ import annotations

from envdoctor.report_diff import Change, compare
from envdoctor.facts import Component, Finding, Gpu, GpuDevice, LoadError, LoadResult, Package, PythonEnv, Report
from envdoctor.fleet.fingerprint import NodeFacts


def _none(v: str) -> "str | None":
    return None if v in ("none", "?") else v


def as_report(nf: NodeFacts) -> Report:
    f = nf.fields
    gpu = Gpu(driver_version=_none(f.get("driver", "none")), cuda_driver_version=_none(f.get("cuda_driver", "none")),
              devices=[GpuDevice(index=i, name=d.get("name", "?"), compute_capability=_none(d.get(
                  "compute_capability", "?"))) for i, d in enumerate(nf.devices)])
    components: dict[str, Component] = {}
    packages: dict[str, Package] = {}
    torch = f.get("torch", "not installed")
    if torch != "not installed":
        components["torch"] = Component("torch", installed=True, version=torch)
    for name in ("torchvision", "mmcv"):
        if f.get(name, "not installed") != "not installed":
            packages[name] = Package(name, version=f[name])
    if nf.mode != "quick":
        for item in f.get("loads", "").split():
            name, _, status = item.partition("=")
            comp = components.setdefault(name, Component(name, installed=True))
            err = nf.load_errors.get(name)
            comp.load = LoadResult(status=status, error=LoadError(message=err) if err else None)
    findings = [Finding(id=x["id"], name="", severity=x["severity"], component=x["component"], title=x["title"])
                for x in nf.findings]
    return Report(mode=nf.mode, gpu=gpu, python=PythonEnv(version=f.get("python", "?")), components=components,
                  packages=packages, findings=tuple(findings))


def differences(base: NodeFacts, other: NodeFacts) -> tuple[list[Change], bool]:
    """Changes from base to other, most important first, and whether other is worse."""
    d = compare(as_report(base), as_report(other))
    return d.changes, d.worse
