"""What makes two nodes "the same environment": the fingerprint, read straight from a report's JSON.

Fields: NVIDIA driver, the CUDA version the driver supports, GPU model and count (with compute
capability), Python version, torch (version and CUDA build), torchvision, mmcv (version and
distribution), whether each extension loads, and the ids of the findings. Not in it: paths, host
names, package lists, timings: they differ on healthy nodes and would split every group.

Reads the decoded JSON, not the Report dataclasses: building those for 10,000 reports would take
longer than everything else together (bench/bench_fleet.py), and only these few fields are needed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from envdoctor.report_diff import COMPONENT_ORDER
from envdoctor.facts import SCHEMA_PREFIX
from envdoctor.report_io import CURRENT_MAJOR

FIELDS = ("driver", "cuda_driver", "gpus", "python", "torch", "torchvision", "mmcv", "loads", "findings")


@dataclass
class NodeFacts:
    """One member's fingerprint and what is needed to explain how it differs from another's."""

    fields: dict[str, str]
    findings: list[dict[str, str]] = field(default_factory=list)  # id, severity, component, title
    load_errors: dict[str, str] = field(default_factory=dict)  # component -> first line of its error
    devices: list[dict[str, str]] = field(default_factory=list)  # name, compute_capability
    mode: str = "full"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f["severity"] == "error")

    def to_dict(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "findings": [dict(f) for f in self.findings],
                "load_errors": dict(self.load_errors), "devices": [dict(d) for d in self.devices], "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NodeFacts":
        return cls(fields={k: str(v) for k, v in (data.get("fields") or {}).items()},
                   findings=[{k: str(v) for k, v in f.items()} for f in data.get("findings") or []],
                   load_errors={k: str(v) for k, v in (data.get("load_errors") or {}).items()},
                   devices=[{k: str(v) for k, v in d.items()} for d in data.get("devices") or []],
                   mode=str(data.get("mode") or "full"))


def _d(data: Any, key: str) -> dict[str, Any]:
    v = data.get(key) if isinstance(data, dict) else None
    return v if isinstance(v, dict) else {}


def _first_line(s: Any) -> str:
    lines = str(s or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def check_report(data: Any) -> Optional[str]:
    """Why this JSON is not a report of the major this envdoctor reads, or None."""
    if not isinstance(data, dict) or not isinstance(data.get("schema"), str):
        return "not an envdoctor report (no \"schema\" field)"
    schema = data["schema"]
    if not schema.startswith(SCHEMA_PREFIX):
        return f"not an envdoctor report (schema {schema!r})"
    if schema[len(SCHEMA_PREFIX):].split(".", 1)[0] != str(CURRENT_MAJOR):
        return f"an envdoctor report of schema {schema!r}; this envdoctor reads major {CURRENT_MAJOR}"
    for key in ("gpu", "python", "components"):
        if not isinstance(data.get(key), dict):
            return f"a damaged envdoctor report: {key!r} is missing or not a JSON object"
    if not isinstance(data.get("findings"), list):
        return "a damaged envdoctor report: 'findings' is missing or not a JSON array"
    return None


def _gpus(gpu: dict[str, Any]) -> str:
    devices = [d for d in gpu.get("devices") or [] if isinstance(d, dict)]
    if not devices:
        return "none"
    counts = Counter(f"{d.get('name') or '?'} (sm {d.get('compute_capability') or '?'})" for d in devices)
    return ", ".join(f"{n}x {name}" for name, n in sorted(counts.items()))


def _torch(comp: dict[str, Any]) -> str:
    if not comp.get("installed"):
        return "not installed"
    facts = _d(comp, "facts")
    cuda = _d(facts, "version_py").get("cuda") or _d(facts, "runtime").get("cuda")
    return f"{comp.get('version') or '?'} ({'CUDA ' + str(cuda) if cuda else 'CPU-only'})"


def _versioned(comp: dict[str, Any], with_distribution: bool = False) -> str:
    if not comp.get("installed"):
        return "not installed"
    dists = _d(comp, "facts").get("distributions") or [comp.get("distribution")]
    dist = "+".join(str(d) for d in dists if d)
    return f"{comp.get('version') or '?'}" + (f" ({dist})" if with_distribution and dist else "")


def node_facts(data: dict[str, Any]) -> NodeFacts:
    """The fingerprint of one report (already checked with check_report)."""
    gpu, comps = _d(data, "gpu"), _d(data, "components")
    mode = str(data.get("mode") or "full")
    loads, errors = [], {}
    names = [n for n in COMPONENT_ORDER if n in comps] + sorted(set(comps) - set(COMPONENT_ORDER))
    for name in names:
        load = _d(comps[name], "load")
        status = str(load.get("status") or "not probed")
        if status == "missing" and not _d(comps, name).get("installed"):
            continue  # not installed is already said by the version fields
        loads.append(f"{name}={status}")
        msg = _first_line(_d(load, "error").get("message"))
        if msg and status != "ok":
            errors[name] = msg
    findings = []
    for f in data.get("findings") or []:
        if isinstance(f, dict) and isinstance(f.get("id"), str):
            findings.append({"id": f["id"], "severity": str(f.get("severity") or "info"),
                             "component": str(f.get("component") or ""), "title": str(f.get("title") or "")})
    fields = {
        "driver": str(gpu.get("driver_version") or "none"),
        "cuda_driver": str(gpu.get("cuda_driver_version") or "none"),
        "gpus": _gpus(gpu),
        "python": str(_d(data, "python").get("version") or "?"),
        "torch": _torch(_d(comps, "torch")),
        "torchvision": _versioned(_d(comps, "torchvision")),
        "mmcv": _versioned(_d(comps, "mmcv"), with_distribution=True),
        "loads": " ".join(loads) if mode != "quick" else "not probed (--quick)",
        "findings": " ".join(sorted({f["id"] for f in findings})) or "none",
    }
    devices = [{"name": str(d.get("name") or "?"), "compute_capability": str(d.get("compute_capability") or "?")}
               for d in gpu.get("devices") or [] if isinstance(d, dict)]
    return NodeFacts(fields=fields, findings=findings, load_errors=errors, devices=devices, mode=mode)
