"""ED5xx: Python-level problems: NumPy ABI, glibc / libstdc++ floors of the wheels in use, start-up code that fails."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from envdoctor import matrix
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import pip
from envdoctor.facts import Finding, Fix, Report

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
def numpy_abi(report: Report, tables: Any) -> Iterable[Finding]:
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


def _manylinux_floor(tables: Any, tag: str) -> Optional[str]:
    m = re.search(r"manylinux_(\d+)_(\d+)_", tag)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    for row in tables.rows("manylinux"):
        if f"{row['tag']}_" in tag:
            return row["glibc"]
    return None


@check(GLIBC)
def glibc_too_old(report: Report, tables: Any) -> Iterable[Finding]:
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
    glibc = matrix.parse_version(host.glibc)
    for _key, pkg in sorted(report.packages.items()):
        floors = [f for f in (_manylinux_floor(tables, t) for t in pkg.wheel_tags) if f]
        if not floors:
            continue
        need = min(floors, key=matrix.vkey)
        if glibc is not None and matrix.vkey(need) > glibc:
            yield finding(GLIBC, f"{pkg.name} {pkg.version} is a manylinux wheel for glibc >= {need}; this system "
                                 f"has glibc {host.glibc}",
                          evidence={"package": pkg.name, "wheel_tags": pkg.wheel_tags, "glibc": host.glibc},
                          fixes=[Fix(description="use a newer OS (or container), or a release of the package "
                                                 f"built for glibc {host.glibc}")])
    for row in tables.rows("glibc_floor"):
        floor_pkg = report.packages.get(row["package"])
        if floor_pkg is None or not matrix.in_spec(floor_pkg.version, row["version"]):
            continue
        pkg = floor_pkg
        have_cxx = matrix.parse_version(host.glibcxx) if host.glibcxx else None
        if row.get("glibcxx") and have_cxx is not None and have_cxx < matrix.vkey(row["glibcxx"]):
            yield finding(GLIBC, f"{pkg.name} {pkg.version} needs GLIBCXX_{row['glibcxx']}; the libstdc++ it loads "
                                 f"provides up to GLIBCXX_{host.glibcxx}",
                          evidence={"package": pkg.name, "required": row["glibcxx"], "libstdcxx": host.libstdcxx,
                                    "source": row["source"]},
                          fixes=[Fix(description="load a newer libstdc++ (conda: `conda install -c conda-forge "
                                                 "libstdcxx-ng`)")])


STARTUP = Rule(
    id="ED503", name="python-startup-code-fails", severity="warning", component="python",
    summary="A .pth line or sitecustomize/usercustomize raises every time this Python starts.",
    rationale="At start-up site.py runs every line of the site directories' .pth files that begins with "
    "`import`, then imports sitecustomize and usercustomize. An exception there does not stop Python: it prints "
    "'Error processing line N of X.pth' (and ignores the rest of that file) or 'Error in sitecustomize', on "
    "every run of every script, and whatever that code was meant to set up (an editable install, a path hook, "
    "envdoctor's own compat hook) is silently missing.",
    evidence=("python.startup.stderr", "python.startup.pth_exec", "python.startup.sitecustomize"),
    fixes=("repair or remove the failing line (renaming a .pth file to anything not ending in .pth disables it)",
           "repair or remove sitecustomize.py / usercustomize.py"),
)

_PTH_ERROR = re.compile(r"^Error processing line (\d+) of (.+?):\s*$", re.M)
_CUSTOMIZE_ERROR = re.compile(r"^Error in (sitecustomize|usercustomize); set PYTHONVERBOSE for traceback:\n(.*)$", re.M)


def _exception_after(text: str, start: int) -> str:
    """The exception line of the traceback site.py printed after `start` (its last indented line)."""
    block = text[start:].split("Remainder of file ignored", 1)[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _disable(path: str) -> str:
    quoted = f'"{path}"' if " " in path else path
    quoted_off = f'"{path}.disabled"' if " " in path else f"{path}.disabled"
    return f"mv {quoted} {quoted_off}"


@check(STARTUP)
def startup_code_fails(report: Report, tables: Any) -> Iterable[Finding]:
    startup = report.python.startup if isinstance(report.python.startup, dict) else {}
    text = startup.get("stderr")
    if not isinstance(text, str) or not text.strip():
        return
    pth_lines = {(e.get("path"), e.get("line")): e.get("text") for e in startup.get("pth_exec") or []
                 if isinstance(e, dict)}
    seen = set()
    for m in _PTH_ERROR.finditer(text):
        line, path = int(m.group(1)), m.group(2)
        if (path, line) in seen:  # a venv's lib64 -> lib link makes site.py read the same file twice
            continue
        seen.add((path, line))
        error = _exception_after(text, m.end())
        code = pth_lines.get((path, line))
        yield finding(STARTUP, f"line {line} of {path} raises at every start of this Python: {error}",
                      detail=(f"The line is `{code}`. " if code else "")
                      + "site.py prints the traceback on every run and ignores the rest of the file.",
                      evidence={"file": path, "line": line, "error": error, "code": code},
                      fixes=[Fix(description=f"repair or delete line {line} of {path}, or disable the whole file "
                                             "(nothing ending in .pth is read)", commands=[_disable(path)])])
    for m in _CUSTOMIZE_ERROR.finditer(text):
        module, error = m.group(1), m.group(2).strip()
        entry = startup.get(module)
        info: dict[str, Any] = entry if isinstance(entry, dict) else {}
        path = info.get("path") or f"{module}.py"
        yield finding(STARTUP, f"{module} ({path}) raises at every start of this Python: {error}",
                      detail=f"site.py prints 'Error in {module}' on every run; whatever {module} sets up is missing.",
                      evidence={"file": path, "module": module, "error": error},
                      fixes=[Fix(description=f"repair {path}, or move it out of the way",
                                 commands=[_disable(path)] if info.get("path") else [])])
