"""Classify a load failure: which cause, and which library / symbol / version it names.

The probe records what happened; this module (`classified`, the last step of
building the facts, before any check runs) reads the error text against the
[[load_error]], [[winerror]] and [[win_message]] tables. Windows errors are keyed on the number; a localized
message without a number ("DLL load failed while importing _ext: 找不到指定的程序。")
is matched against the known translations.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from envdoctor.facts import Component, LoadError, LoadResult, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

_WINERROR = re.compile(r"\[WinError (\d+)\]")
_ERROR_LOADING = re.compile(r'Error loading "([^"]+)"')
_DLL_LOAD = re.compile(r"DLL load failed(?: while importing (?P<module>[\w.]+))?: (?P<text>[^\r\n]+)")
# A `__cxx11` (or `[abi:cxx11]`) mangled name: code built with the new libstdc++ ABI.
_CXX11 = re.compile(r"__cxx11|B5cxx11")


@dataclass
class Cause:
    kind: str  # missing_library | undefined_symbol | missing_procedure | dll_init_failed | numpy_abi | ...
    title: str = ""
    library: Optional[str] = None
    symbol: Optional[str] = None
    version: Optional[str] = None
    module: Optional[str] = None
    winerror: Optional[int] = None
    language: Optional[str] = None  # of a localized Windows message
    cxx11_symbol: bool = False  # the missing symbol is a new-ABI (__cxx11) name
    source: Optional[str] = None  # the table row it came from

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False, "")}


def _norm(text: str) -> str:
    return text.strip().rstrip(".。").strip()


def _winerror_row(tables: Tables, code: int) -> Optional[dict[str, Any]]:
    return next((r for r in tables.rows("winerror") if r["code"] == code), None)


def _from_winerror(tables: Tables, code: int, text: str, language: Optional[str] = None) -> Optional[Cause]:
    row = _winerror_row(tables, code)
    if row is None:
        return None
    m = _ERROR_LOADING.search(text)
    return Cause(kind=row["cause"], title=row.get("note", row["name"]), winerror=code,
                 library=m.group(1) if m else None, language=language, source=row["source"])


def classify_text(text: str, tables: Tables, winerror: Optional[int] = None) -> Optional[Cause]:
    """The cause named by one error text (message or traceback), or None."""
    if not text and winerror is None:
        return None
    code = winerror
    if code is None:
        m = _WINERROR.search(text)
        code = int(m.group(1)) if m else None
    if code is not None:
        cause = _from_winerror(tables, code, text)
        if cause is not None:
            return cause
    dll = _DLL_LOAD.search(text)
    if dll:
        said = _norm(dll.group("text"))
        for row in tables.rows("win_message"):
            if _norm(row["text"]) and _norm(row["text"]) in said:
                cause = _from_winerror(tables, row["code"], text, language=row["lang"])
                if cause is not None:
                    cause.module = dll.group("module")
                    return cause
    rows = sorted(tables.rows("load_error"), key=lambda r: r.get("priority", 100))
    for row in rows:
        m = re.search(row["pattern"], text)
        if not m:
            continue
        groups = {k: v for k, v in m.groupdict().items() if v}
        cause = Cause(kind=row["cause"], title=row.get("title", ""), source=row["source"],
                      library=groups.get("library"), symbol=groups.get("symbol"),
                      version=groups.get("version"), module=groups.get("module"))
        if cause.symbol and _CXX11.search(cause.symbol):
            cause.cxx11_symbol = True
        return cause
    return None


def classify(load: Optional[LoadResult], tables: Tables) -> Optional[Cause]:
    """The cause of one failed load (None when it did not fail)."""
    if load is None or load.status in ("ok", "skipped"):
        return None
    err = load.error
    if load.status == "timeout":
        return Cause(kind="timeout", title="the import did not finish in time")
    message = err.message if err else ""
    cause = classify_text(message, tables, err.winerror if err else None)
    if cause is None and err and err.traceback:
        cause = classify_text(err.traceback, tables)
    if cause is not None:
        return cause
    if load.status == "crash":
        signal = err.signal if err and err.signal else "no signal"
        return Cause(kind="crash", title=f"the import killed the process ({signal})")
    if load.status == "missing":
        return Cause(kind="missing_module", title="the module is not installed")
    return Cause(kind="unknown", title=(message.strip().splitlines() or [""])[0][:200])


# Regular packages: imported without an __init__.py (missing, or in a directory Python cannot read) they
# become empty namespace packages, which "import" without error and break every use.
PACKAGES = ("torch", "torchvision", "mmcv")
DAMAGED = "damaged_package"


def package_damage(comp: Component, report: Report) -> list[dict[str, Any]]:
    """Why the installed package `comp` cannot work as imported, from the static facts and what the import
    yielded: [{kind, detail, path?}], empty when nothing is wrong."""
    if comp.name not in PACKAGES or not comp.installed:
        return []
    out: list[dict[str, Any]] = []
    dirs = [d for d in comp.facts.get("package_dirs") or [] if isinstance(d, dict)]
    module = comp.facts.get("module")
    shape: dict[str, Any] = module if isinstance(module, dict) else {}
    # Python prefers a regular package anywhere on sys.path to a namespace portion: only when no copy has
    # an __init__.py that it can see does `import X` give an empty namespace package
    if dirs and all("has_init" in d for d in dirs) and not any(d.get("has_init") for d in dirs):
        first = dirs[0]
        path = str(first.get("path", comp.name))
        if first.get("state") == "unreadable":
            out.append({"kind": "unreadable", "path": path,
                        "detail": f"{path} cannot be read ({first.get('error') or 'no permission'})"})
        else:
            out.append({"kind": "no_init", "path": path, "detail": f"{path}/__init__.py is missing"})
    if shape.get("namespace") and not out:
        where = (shape.get("locations") or [comp.name])[0]
        out.append({"kind": "namespace", "path": where,
                    "detail": f"`import {comp.name}` gives an empty namespace package ({where})"})
    elif not shape.get("namespace") and shape.get("version_error") and shape.get("file"):
        out.append({"kind": "no_version", "path": shape.get("file"),
                    "detail": f"`{comp.name}.__version__` fails: {shape['version_error']}"})
    if comp.name != "mmcv":  # mmcv's shared directory and missing files are ED403's subject
        for dist in comp.facts.get("distributions") or []:
            pkg = report.packages.get(_dist_key(dist))
            if pkg is not None and pkg.record_missing:
                first_files = ", ".join(pkg.missing_files[:3])
                out.append({"kind": "record_missing", "distribution": pkg.name, "count": pkg.record_missing,
                            "detail": f"{pkg.record_missing} of the {pkg.record_files} files pip installed for "
                                      f"{pkg.name} {pkg.version} are missing" + (f" ({first_files}"
                                      + (", ..." if pkg.record_missing > 3 else "") + ")" if first_files else "")})
    return out


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def classified(report: Report, tables: Tables) -> Report:
    """The facts as the checks read them: the probe's report with every load failure classified (a new Report;
    the one given is left as it is). The last step of building the facts, before any check runs.

    Per component: a package damaged on disk that still imported did not really import (its load becomes an
    import_error with cause damaged_package, the probe's own status kept in facts["damage"]); every other
    failed load gets LoadResult.cause and facts["load_cause"] with the details; torchvision's hidden loader
    error (facts["loader_error"] of torchvision.ops) gets facts["loader_cause"]."""
    return replace(report, components={name: _classified(comp, report, tables)
                                       for name, comp in report.components.items()})


def _classified(comp: Component, report: Report, tables: Tables) -> Component:
    facts = dict(comp.facts)
    load = replace(comp.load) if comp.load is not None else None
    problems = package_damage(comp, report)
    if problems:
        earlier = facts.get("damage")  # classified before: keep what the probe itself saw
        probe_status = earlier.get("probe_status") if isinstance(earlier, dict) else load.status if load else None
        facts["damage"] = {"problems": problems, "probe_status": probe_status}
        if load is not None and load.status == "ok" and any(p["kind"] != "record_missing" for p in problems):
            load = replace(load, status="import_error", cause=DAMAGED,
                           error=LoadError(type="DamagedPackage", message=problems[0]["detail"]))
    if load is not None and load.cause == DAMAGED:
        facts["load_cause"] = {"kind": DAMAGED, "title": "the package is damaged on disk"}
        return replace(comp, facts=facts, load=load)
    cause = classify(load, tables)
    if cause is not None and load is not None:
        load = replace(load, cause=cause.kind)
        facts["load_cause"] = cause.to_dict()
    loader_error = facts.get("loader_error")
    if isinstance(loader_error, str) and loader_error.strip():
        lc = classify_text(loader_error, tables)
        if lc is not None:
            facts["loader_cause"] = lc.to_dict()
    return replace(comp, facts=facts, load=load)
