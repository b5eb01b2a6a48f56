"""Classify a load failure: which cause, and which library / symbol / version it names.

The probe records what happened; this module (run at the start of the checks
stage) reads the error text against the [[load_error]], [[winerror]] and
[[win_message]] tables. Windows errors are keyed on the number; a localized
message without a number ("DLL load failed while importing _ext: 找不到指定的程序。")
is matched against the known translations.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Optional

from envdoctor.facts import LoadResult, Report

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


def _winerror_row(tables: Any, code: int) -> Optional[dict[str, Any]]:
    return next((r for r in tables.rows("winerror") if r["code"] == code), None)


def _from_winerror(tables: Any, code: int, text: str, language: Optional[str] = None) -> Optional[Cause]:
    row = _winerror_row(tables, code)
    if row is None:
        return None
    m = _ERROR_LOADING.search(text)
    return Cause(kind=row["cause"], title=row.get("note", row["name"]), winerror=code,
                 library=m.group(1) if m else None, language=language, source=row["source"])


def classify_text(text: str, tables: Any, winerror: Optional[int] = None) -> Optional[Cause]:
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


def classify(load: Optional[LoadResult], tables: Any) -> Optional[Cause]:
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


def classify_report(report: Report, tables: Any) -> None:
    """Fill LoadResult.cause (and facts["load_cause"] with the details) for every component.

    Also classifies torchvision's hidden loader error (facts["loader_error"] of
    torchvision.ops) into facts["loader_cause"].
    """
    for comp in report.components.values():
        cause = classify(comp.load, tables)
        if cause is not None and comp.load is not None:
            comp.load.cause = cause.kind
            comp.facts["load_cause"] = cause.to_dict()
        loader_error = comp.facts.get("loader_error")
        if isinstance(loader_error, str) and loader_error.strip():
            lc = classify_text(loader_error, tables)
            if lc is not None:
                comp.facts["loader_cause"] = lc.to_dict()
