"""`envdoctor inspect FILE`'s output: what one compiled extension needs and whether it would load."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import IO, Any, Optional

from rich.markup import escape

from envdoctor.facts import Report
from envdoctor.render.text import TextRenderer

SCHEMA = "envdoctor.inspect/1"
# how a needed library was found without a path of its own
_UNPATHED = {"apiset": "(Windows API set)", "system": "(Windows system DLL, assumed present)",
             "vc_runtime": "(Visual C++ runtime, assumed installed)", "interpreter": "(the Python DLL)"}


def inspect_json(a: dict[str, Any], report: Report, ok: bool) -> str:
    out = {"schema": SCHEMA, "file": a.get("path"), "would_load": ok, "analysis": a,
           "findings": [asdict(f) for f in report.findings]}
    return json.dumps(out, indent=2, default=str, ensure_ascii=False) + "\n"


def render_inspect(a: dict[str, Any], report: Report, ok: bool, stream: Optional[IO[str]] = None,
                   color: Optional[bool] = None) -> None:
    r = TextRenderer(stream, color)
    c = r.console
    size = a.get("size") or 0
    what = " ".join(str(x) for x in (a.get("class") or a.get("format"), a.get("machine")) if x)
    c.print(f"[bold]{escape(a.get('path') or '')}[/bold]")
    c.print(f"  {escape(what)}, {size:,} bytes")
    t = a.get("torch") or {}
    if t:
        abi_names: dict[Any, str] = {True: "C++11 ABI", False: "old C++ ABI"}
        abi = abi_names.get(t.get("cxx11_abi"), "")
        c.print(f"  resolved against torch {escape(str(t.get('version', '?')))}"
                + (f" (CUDA {escape(t['cuda'])})" if t.get("cuda") else " (CPU)")
                + (f", {abi}" if abi else "") + f" in {escape(t.get('dir', ''))}")
    b = a.get("build") or {}
    if b.get("compiler") or b.get("pybind11_internals"):
        c.print("  built with " + escape("; ".join((b.get("compiler") or [])[:1] + (
            [b["pybind11_internals"]] if b.get("pybind11_internals") else []))))
    for n in a.get("needed") or []:
        state = "ok" if n.get("path") or n.get("how") in _UNPATHED else "error"
        where = n.get("path") or _UNPATHED.get(n.get("how") or "", "not found")
        how = f" [{n['how']}]" if n.get("path") else ""
        c.print(f"  {r.mark(state)} {escape(n['name']):<28} {escape(where)}{escape(how)}")
    if a.get("format") in ("elf", "pe") and not a.get("problem"):
        c.print(f"  {a.get('undefined_count', 0)} imported symbols checked, "
                f"{a.get('missing_symbols_count', 0)} missing; "
                f"{a.get('missing_libraries_count', 0)} libraries missing; "
                f"{a.get('missing_versions_count', 0)} symbol versions missing")
    c.print()
    for f in report.findings:
        r.finding(f)
    if ok:
        c.print(f"{r.mark('ok')} would load: every library, symbol and symbol version it needs is present")
    else:
        c.print(f"{r.mark('error')} would not load")
