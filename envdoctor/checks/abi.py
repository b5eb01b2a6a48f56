"""ED501-ED502: binary interfaces below the extensions: the NumPy C ABI they were built against, and the glibc /
libstdc++ floors of the wheels in use (ED503, start-up code that fails, is in startup.py)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Optional

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import pip
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

NUMPY = Rule(
    id="ED501", name="numpy2-vs-numpy1-extension", severity="error", component="python",
    summary="An extension built against NumPy 1.x is imported under NumPy 2.",
    rationale="NumPy 2 changed its C ABI. A module compiled against NumPy 1.x prints 'A module that was compiled "
    "using NumPy 1.x cannot be run in NumPy 2.x as it may crash' and fails ('_ARRAY_API not found'). Either "
    "downgrade NumPy below 2 or upgrade the module to a build made with NumPy 2.",
    evidence=("components.*.load", "packages.numpy.version"),
    tables=("load_error",),
    fixes=("pip install \"numpy<2\"", "or upgrade the affected package"),
)

GLIBC = Rule(
    id="ED502", name="glibc-glibcxx-too-old", severity="error", component="python",
    summary="The system C library (glibc) or C++ runtime (libstdc++) is older than the wheels in use need.",
    rationale="A manylinux_X_Y wheel needs glibc >= X.Y (PEP 600); torch 2.13+ wheels also need GLIBCXX_3.4.22 "
    "and CXXABI_1.3.11. An older libstdc++ (often a conda environment's own, loaded first) gives \"version "
    "`GLIBCXX_3.4.30' not found\".",
    evidence=("host.glibc", "host.glibcxx", "host.libstdcxx", "packages.*.wheel_tags", "components.*.load"),
    tables=("manylinux", "glibc_floor", "load_error"),
    fixes=("use a newer libstdc++ (conda: `conda install -c conda-forge libstdcxx-ng`) or a newer OS",
           "or wheels built for an older manylinux"),
)


@check(NUMPY)
def numpy_abi(report: Report, tables: Tables) -> Iterable[Finding]:
    numpy = report.packages.get("numpy")
    for name, comp in report.components.items():
        cause = comp.facts.get("load_cause") or {}
        if cause.get("kind") != "numpy_abi":
            continue
        np_ver = cause.get("version") or (numpy.version if numpy else "?")
        top = name.split(".")[0]
        yield finding(NUMPY, f"{name} was built against NumPy 1.x, but NumPy {np_ver} is installed",
                      evidence={"component": name, "numpy": numpy.version if numpy else None,
                                "message": ((comp.load.error.message.splitlines() or [""])[0]
                                            if comp.load and comp.load.error else "")},
                      fixes=[Fix(description="downgrade NumPy below 2", commands=[f'{pip(report)} install "numpy<2"']),
                             Fix(description=f"or upgrade {top} to a release built with NumPy 2")])


def _manylinux_floor(tables: Tables, tag: str) -> Optional[str]:
    m = re.search(r"manylinux_(\d+)_(\d+)_", tag)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    for row in tables.rows("manylinux"):
        if f"{row['tag']}_" in tag:
            return row["glibc"]
    return None


@check(GLIBC)
def glibc_too_old(report: Report, tables: Tables) -> Iterable[Finding]:
    host = report.host
    # (a) a load failed on a versioned symbol
    for name, comp in report.components.items():
        cause = comp.facts.get("load_cause") or {}
        if cause.get("kind") not in ("glibcxx", "glibc"):
            continue
        have = host.glibcxx if cause["kind"] == "glibcxx" else host.glibc
        yield finding(GLIBC, f"{name} needs {cause.get('version')}, which the loaded "
                             f"{'libstdc++' if cause['kind'] == 'glibcxx' else 'glibc'} does not provide",
                      detail=f"required by {cause.get('library') or '?'}; loaded: {host.libstdcxx or '?'} "
                             f"(newest GLIBCXX {host.glibcxx or '?'}), glibc {host.glibc or '?'}",
                      evidence={"component": name, "required": cause.get("version"), "library": cause.get("library"),
                                "have": have, "libstdcxx": host.libstdcxx},
                      fixes=[Fix(description="load a newer libstdc++: in conda `conda install -c conda-forge "
                                             "libstdcxx-ng`; elsewhere upgrade the OS's libstdc++ (or point "
                                             "LD_LIBRARY_PATH at a newer one)")])
    # (b) static: wheels whose manylinux tag needs a newer glibc than the host has
    if not host.glibc or (host.os or "").lower() != "linux":
        return
    glibc = tables_query.parse_version(host.glibc)
    for _key, pkg in sorted(report.packages.items()):
        floors = [f for f in (_manylinux_floor(tables, t) for t in pkg.wheel_tags) if f]
        if not floors:
            continue
        need = min(floors, key=tables_query.vkey)
        if glibc is not None and tables_query.vkey(need) > glibc:
            yield finding(GLIBC, f"{pkg.name} {pkg.version} is a manylinux wheel for glibc >= {need}; this system "
                                 f"has glibc {host.glibc}",
                          evidence={"package": pkg.name, "wheel_tags": pkg.wheel_tags, "glibc": host.glibc},
                          fixes=[Fix(description="use a newer OS (or container), or a release of the package "
                                                 f"built for glibc {host.glibc}")])
    for row in tables.rows("glibc_floor"):
        floor_pkg = report.packages.get(row["package"])
        if floor_pkg is None or not tables_query.in_spec(floor_pkg.version, row["version"]):
            continue
        pkg = floor_pkg
        have_cxx = tables_query.parse_version(host.glibcxx) if host.glibcxx else None
        if row.get("glibcxx") and have_cxx is not None and have_cxx < tables_query.vkey(row["glibcxx"]):
            yield finding(GLIBC, f"{pkg.name} {pkg.version} needs GLIBCXX_{row['glibcxx']}; the libstdc++ it loads "
                                 f"provides up to GLIBCXX_{host.glibcxx}",
                          evidence={"package": pkg.name, "required": row["glibcxx"], "libstdcxx": host.libstdcxx,
                                    "source": row["source"]},
                          fixes=[Fix(description="load a newer libstdc++ (conda: `conda install -c conda-forge "
                                                 "libstdcxx-ng`)")])
