"""The one set of readers over a Report: what checks, the fix plan, diff and the renderers ask of the facts.

Pure (no I/O). The report holds facts as the probes found them (free-form dicts inside components, fields
that may be empty in an old or partial report); every question about them is answered here, once, so
that `check` and `fix` cannot read the same facts two ways. Names the rule tables know (OpenMMLab's
consumers, the mmcv distributions) come from the tables, so a `--rules` directory can add one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from envdoctor import tables_query
from envdoctor.facts import FAILED, Component, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def norm(name: str) -> str:
    """PEP 503 normalised distribution name: `MMCV_Lite` -> `mmcv-lite` (the keys of `report.packages`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the rule tables' names -----------------------------------------------------------------------------

def consumer_names(tables: "Tables") -> tuple[str, ...]:
    """Packages that assert an mmcv range at import time: every package of a [[mmcv_consumer]] row."""
    return tuple(dict.fromkeys(norm(row["package"]) for row in tables.rows("mmcv_consumer")))


def mmcv_dist_names(tables: "Tables") -> tuple[str, ...]:
    """Every distribution that installs the `mmcv/` package ([[mmcv_flavour]]), in a stable order."""
    return tuple(sorted({norm(row["distribution"]) for row in tables.rows("mmcv_flavour")}))


# --- the target -----------------------------------------------------------------------------------------

def os_name(report: Report) -> str:
    """linux | windows | macos. A report without host facts (an old or hand-made one) is judged by the
    interpreter's platform tag, so an empty `host.os` never reads as an OS of its own."""
    s = (report.host.os or "").lower()
    if s.startswith("win"):
        return "windows"
    if s == "darwin" or s.startswith("mac"):
        return "macos"
    if not s:
        tag = (report.python.platform_tag or "").lower()
        return "windows" if tag.startswith("win") else "macos" if tag.startswith("macos") else "linux"
    return "linux"


def python_minor(report: Report) -> str:
    return tables_query.minor_of(report.python.version or "") or ""


def installed_version(report: Report, dist: str) -> Optional[str]:
    """The installed distribution's version ("" when its metadata has none), None when it is not installed."""
    pkg = report.packages.get(norm(dist))
    return pkg.version if pkg is not None else None


# --- components -----------------------------------------------------------------------------------------

def comp(report: Report, name: str) -> Optional[Component]:
    """The component if its files are installed."""
    c = report.components.get(name)
    return c if c is not None and c.installed else None


def runtime(c: Optional[Component]) -> dict[str, Any]:
    """What the component said about itself once imported (torch.version.*, cuda_available, ...)."""
    r = c.facts.get("runtime") if c is not None else None
    return r if isinstance(r, dict) else {}


def version_py(c: Optional[Component]) -> dict[str, Any]:
    """The component's version.py as read from disk, without importing it."""
    v = c.facts.get("version_py") if c is not None else None
    return v if isinstance(v, dict) else {}


def _usable(value: Any) -> bool:
    """A runtime attribute the probe could read (it records a failed read as "error: ...")."""
    return isinstance(value, str) and bool(value) and not value.startswith("error:")


def load_status(report: Report, name: str) -> Optional[str]:
    """The status of the component's isolated import; None when it was not recorded."""
    c = report.components.get(name)
    return c.load.status if c is not None and c.load is not None else None


def state(report: Report, name: str) -> str:
    """One word for the component in these facts: one that loads is "ok" whether its file exists or something
    else serves it (the compat layer serving `mmcv._ext`); else "missing" when not installed; else its load
    status ("skipped" when no import was tried)."""
    c = report.components.get(name)
    if c is None:
        return "missing"
    if c.load is not None and c.load.status == "ok":
        return "ok"
    if not c.installed:
        return "missing"
    return c.load.status if c.load is not None else "skipped"


def failed(report: Report, name: str) -> bool:
    """The component's import was tried and failed (not: absent, not tried)."""
    return load_status(report, name) in FAILED


def load_cause(report: Report, name: str) -> dict[str, Any]:
    c = report.components.get(name)
    lc = c.facts.get("load_cause") if c is not None else None
    return lc if isinstance(lc, dict) else {}


def load_message(report: Report, name: str, *, last: bool = False, limit: Optional[int] = None) -> str:
    """One line of the component's load error: the first (the exception's own line) or, with `last`, the
    last one (a traceback's conclusion), cut to `limit` characters. "" when it has none."""
    c = report.components.get(name)
    if c is None or c.load is None or c.load.error is None or not c.load.error.message:
        return ""
    lines = c.load.error.message.strip().splitlines() or [""]
    line = lines[-1] if last else lines[0]
    return line[:limit] if limit is not None else line


def damaged(report: Report, name: str) -> bool:
    """The package is damaged on disk (classify.mark_damaged): its import cannot give a working module."""
    c = report.components.get(name)
    return c is not None and isinstance(c.facts.get("damage"), dict)


# --- torch ----------------------------------------------------------------------------------------------

def torch_version(report: Report) -> Optional[str]:
    """The torch version as imported if the import could read it, else torch/version.py, else the dist-info."""
    c = comp(report, "torch")
    if c is None:
        return None
    rt = runtime(c).get("version")
    if _usable(rt):
        return str(rt)
    return version_py(c).get("__version__") or c.version


def torch_cuda(report: Report) -> Optional[str]:
    """torch.version.cuda: "12.4", or None for a CPU (or ROCm) build."""
    c = comp(report, "torch")
    if c is None:
        return None
    rt = runtime(c)
    if "cuda" in rt and (rt["cuda"] is None or _usable(rt["cuda"])):
        return rt["cuda"]
    vp = version_py(c)
    if "cuda" in vp:
        return vp["cuda"]
    return tables_query.local_cuda(torch_version(report))


def torch_hip(report: Report) -> Optional[str]:
    c = comp(report, "torch")
    if c is None:
        return None
    return runtime(c).get("hip") or version_py(c).get("hip")


def torch_unusable(report: Report) -> bool:
    """torch is installed but does not import as a working module: nothing built on it can be judged or fixed
    (a compat layer that runs on torch cannot help) until torch itself is repaired."""
    c = comp(report, "torch")
    return c is not None and (damaged(report, "torch") or (c.load is not None and c.load.status in FAILED))


# --- mmcv and its consumers -----------------------------------------------------------------------------

def consumers(report: Report, tables: "Tables") -> dict[str, str]:
    """Installed OpenMMLab packages that assert an mmcv range: {"mmdet": "3.3.0"}."""
    out = {}
    for key in consumer_names(tables):
        pkg = report.packages.get(key)
        if pkg is not None and pkg.version:
            out[key] = pkg.version
    return out


def mmcv_dists(report: Report, tables: "Tables") -> list[str]:
    """Normalized names of every distribution that installs the `mmcv` package (the probe's list first)."""
    c = report.components.get("mmcv")
    names = [norm(d) for d in (c.facts.get("distributions") or [])] if c is not None else []
    for key in mmcv_dist_names(tables):
        if key in report.packages and key not in names and "mmcv" in (report.packages[key].top_level or ["mmcv"]):
            names.append(key)
    return names


def mmcv_version(report: Report) -> Optional[str]:
    """The installed mmcv's version: its version.py, else the component's (dist-info) version."""
    c = comp(report, "mmcv")
    if c is None:
        return None
    return version_py(c).get("__version__") or c.version


def mmcv_series(report: Report) -> Optional[int]:
    """The installed mmcv's major version (1 = the mmcv-full era): a replacement keeps the user's series."""
    v = tables_query.parse_version(mmcv_version(report))
    return v.major if v is not None else None


def version_major(version: Optional[str]) -> Optional[int]:
    v = tables_query.parse_version(version)
    return v.major if v is not None else None


def mmcv_ops_ok(report: Report) -> bool:
    """mmcv._ext loads (its own file, or the compat layer serving it)."""
    return load_status(report, "mmcv._ext") == "ok"


def mmcv_ops_expected(report: Report, tables: "Tables") -> bool:
    """Does this environment want mmcv's ops? Not for a lone, deliberate mmcv-lite without consumers."""
    dists = mmcv_dists(report, tables)
    if load_status(report, "mmcv._ext") in FAILED or len(dists) > 1 or consumers(report, tables):
        return True
    return dists != ["mmcv-lite"]


def mmcv_wheel(report: Report, tables: "Tables", series: Optional[int] = None) -> Optional[tables_query.WheelChoice]:
    """The official prebuilt mmcv wheel for these facts (torch as imported, its CUDA build, Python, OS, the
    consumers' ranges), of `series` when one exists, else the newest that fits; None when no wheel exists.
    The checks' advice and the fix plan both ask this, so `fix` installs the wheel `check` recommends."""
    ver = torch_version(report)
    if ver is None:
        return None
    args = (tables, ver, torch_cuda(report), python_minor(report), os_name(report), consumers(report, tables))
    choice = tables_query.mmcv_wheel_for(*args, mmcv_major=series) if series else None
    return choice or tables_query.mmcv_wheel_for(*args)
