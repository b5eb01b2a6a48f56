"""`envdoctor inspect FILE`: why one compiled extension (.so / .pyd / .dll) would not load.

Reads the file only (never loads it), so a Linux machine can analyse a Windows .pyd
from a bug report. Libraries are resolved against the environment the file sits in
(its site-packages' torch), or the one named with --python, plus --search-dir
directories (LD_LIBRARY_PATH-like on Linux; os.add_dll_directory-like for a .pyd).
Exit 0: it would load; 1: a problem was found; 2: bad input.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any, Optional

from envdoctor.binary import Context, analyse_file, context_for
from envdoctor.checks import run_checks
from envdoctor.errors import UsageError
from envdoctor.facts import Component, LoadResult, Report
from envdoctor.facts import package_dir_paths
from envdoctor.options import InspectOptions
from envdoctor.render.formats import check_format, write_formatted
from envdoctor.render.inspect import inspect_json, render_inspect

FORMATS = ("text", "json")


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
        from envdoctor.pipeline import static_facts

        target = static_facts(python)  # where torch is, which version
        torch = target.components.get("torch")
        report = Report(envdoctor="", mode="inspect", python=target.python, packages=target.packages,
                        host=target.host, components={"torch": torch} if torch is not None else {})
        if torch is not None:
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
    from envdoctor.rules import Tables

    # ED7xx read the analysis, no table
    return analysis, replace(report, findings=tuple(run_checks(report, Tables(), select=["ED7"])))


def run(opts: InspectOptions) -> int:
    check_format(opts.fmt, FORMATS)
    fmt = opts.fmt
    analysis, report = inspect_file(opts.file, opts.python, opts.search_dirs)
    bad = (not analysis.get("would_load", False)) or any(f.severity == "error" for f in report.findings)
    if not opts.no_redact:  # paths to the file and its libraries name the user, like check's report
        from envdoctor.redact import Redactor, redact_report

        redactor = Redactor()
        analysis, report = redactor.value(analysis), redact_report(report, redactor)
    write_formatted(fmt, None, lambda stream, color: render_inspect(analysis, report, not bad, stream, color),
                    json=lambda: inspect_json(analysis, report, not bad))
    return 1 if bad else 0
