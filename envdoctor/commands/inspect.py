"""`envdoctor inspect FILE`: why one compiled extension (.so / .pyd / .dll) would not load.

Reads the file only (never loads it), so a Linux machine can analyse a Windows .pyd
from a bug report. Libraries are resolved against the environment the file sits in
(its site-packages' torch), or the one named with --python, plus --search-dir
directories (LD_LIBRARY_PATH-like on Linux; os.add_dll_directory-like for a .pyd).
Exit 0: it would load; 1: a problem was found; 2: bad input.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any, Optional

from envdoctor.binary import Context, analyse_file, context_for
from envdoctor.checks import run_checks
from envdoctor.errors import UsageError
from envdoctor.facts import Component, LoadResult, Report
from envdoctor.facts import package_dir_paths
from envdoctor.render.output import emit, emit_rendered

FORMATS = ("text", "json")
SCHEMA = "envdoctor.inspect/1"


def _site_packages_of(path: str) -> tuple[Optional[str], Optional[str]]:
    """(site-packages dir, top-level package) if `path` lies inside an installed package."""
    d = os.path.dirname(os.path.abspath(path))
    parts: list[str] = []
    for _ in range(8):
        if os.path.basename(d) in ("site-packages", "dist-packages") or os.path.isdir(os.path.join(d, "torch")) \
                and os.path.isfile(os.path.join(d, "torch", "version.py")):
            return d, (parts[-1] if parts else None)
        parent = os.path.dirname(d)
        if parent == d:
            break
        parts.append(os.path.basename(d))
        d = parent
    return None, None


def build_context(path: str, python: Optional[str], search_dirs: list[str]) -> tuple[Context, Report]:
    report = Report(envdoctor="", mode="inspect")
    site, _pkg = _site_packages_of(path)
    ctx = Context(search_dirs=search_dirs,
                  ld_library_path=[p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p],
                  system=sys.platform != "win32")
    if python:
        from envdoctor.probe import collect

        target = collect(python, quick=True)  # static facts only: where torch is, which version
        report.python, report.packages, report.host = target.python, target.packages, target.host
        torch = target.components.get("torch")
        if torch is not None:
            report.components["torch"] = torch
            if torch.installed and package_dir_paths(torch):
                ctx.torch_dir = package_dir_paths(torch)[0]
        ctx.interpreter = target.python.executable
        host_os = (target.host.os or "").lower()
        ctx.host_format = "pe" if host_os == "windows" else ("elf" if host_os == "linux" else None)
        ctx.windows = context_for(report, "inspect").windows  # the DLL directories torch's __init__ adds
        ctx.host_machine = target.host.arch or None
    elif site and os.path.isfile(os.path.join(site, "torch", "version.py")):
        ctx.torch_dir = os.path.join(site, "torch")
    if ctx.torch_dir and os.path.abspath(path).startswith(os.path.abspath(ctx.torch_dir) + os.sep):
        ctx.preload_torch = False  # analysing torch itself: its libraries are not loaded yet
    return ctx, report


def _looks_like_library(path: str) -> bool:
    """foo.so, foo.so.1.2, foo.pyd, foo.dll, foo.dylib: named like something a loader would open."""
    parts = os.path.basename(path).lower().split(".")[1:]
    return any(p in ("so", "pyd", "dll", "dylib") for p in parts)


def component_name(path: str) -> str:
    _site, pkg = _site_packages_of(path)
    stem = os.path.basename(path).split(".")[0]
    return f"{pkg}.{stem}" if pkg and pkg != stem else stem


def inspect_file(path: str, python: Optional[str] = None, search_dirs: Optional[list[str]] = None
                 ) -> tuple[dict[str, Any], Report]:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: not a file")
    for d in search_dirs or []:
        if not os.path.isdir(d):
            raise UsageError(f"--search-dir {d}: not a directory")
    ctx, report = build_context(path, python, list(search_dirs or []))
    try:
        analysis = analyse_file(os.path.abspath(path), ctx)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if analysis.get("format") not in ("elf", "pe", "macho") and not _looks_like_library(path):
        # `inspect report.json` (text, HTML, a pointer, nothing) is a wrong argument, not a broken extension;
        # an empty or garbled `_ext.so` is a real finding (ED705: git-lfs pointer, interrupted download), exit 1.
        what = {"empty": "an empty file", "text": "a text file", "html": "an HTML page",
                "lfs-pointer": "a Git LFS pointer"}.get(analysis.get("format") or "", "not an ELF, PE or Mach-O file")
        raise UsageError(f"{path}: not a compiled extension ({what}); inspect reads .so, .pyd and .dll files")
    name = component_name(path)
    report.components[name] = Component(name=name, installed=True, facts={"binary": analysis},
                                        distribution=name.split(".")[0] if "." in name else None,
                                        load=LoadResult(status="skipped"))
    report.findings = run_checks(report, None, select=["ED7"])
    return analysis, report


def run(path: str, python: Optional[str], search_dirs: list[str], fmt: str, no_redact: bool = False) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    analysis, report = inspect_file(path, python, search_dirs)
    bad = (not analysis.get("would_load", False)) or any(f.severity == "error" for f in report.findings)
    if not no_redact:  # paths to the file and its libraries name the user, like check's report
        from envdoctor.redact import Redactor, redact_report

        redactor = Redactor()
        analysis, report = redactor.value(analysis), redact_report(report, redactor)
    if fmt == "json":
        out = {"schema": SCHEMA, "file": analysis.get("path"), "would_load": not bad, "analysis": analysis,
               "findings": [asdict(f) for f in report.findings]}
        emit(json.dumps(out, indent=2, default=str, ensure_ascii=False) + "\n")
    else:
        emit_rendered(lambda stream: render(analysis, report, not bad, stream))
    return 1 if bad else 0


def render(a: dict[str, Any], report: Report, ok: bool, stream: Any = None) -> None:
    from rich.markup import escape

    from envdoctor.render.text import TextRenderer

    r = TextRenderer(stream)
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
        state = "ok" if n.get("path") or n.get("how") in ("apiset", "system", "vc_runtime", "interpreter") \
            else "error"
        where = n.get("path") or {"apiset": "(Windows API set)", "system": "(Windows system DLL, assumed present)",
                                  "vc_runtime": "(Visual C++ runtime, assumed installed)",
                                  "interpreter": "(the Python DLL)"}.get(n.get("how"), "not found")
        how = f" [{n['how']}]" if n.get("path") else ""
        c.print(f"  {r.mark(state)} {escape(n['name']):<28} {escape(where)}{escape(how)}")
    if a.get("format") in ("elf", "pe") and not a.get("problem"):
        c.print(f"  {a.get('undefined_count', 0)} imported symbols checked, "
                f"{a.get('missing_symbols_count', 0)} missing; "
                f"{a.get('missing_libraries_count', 0)} libraries missing; "
                f"{a.get('missing_versions_count', 0)} symbol versions missing")
    c.print()
    for f in report.findings:
        r._finding(f)
    if ok:
        c.print(f"{r.mark('ok')} would load: every library, symbol and symbol version it needs is present")
    else:
        c.print(f"{r.mark('error')} would not load")
