"""The build strategy's `prepare` step: get the wheel (envdoctor's cache, or a real build outside the
target), or fail with the ED8xx findings of the build log. Nothing in the target changes here; the
transaction installs the wheel afterwards like any other.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from envdoctor.build import build
from envdoctor.build.failures import classify
from envdoctor.fix.plan import Action
from envdoctor.fix.plan_build import spec_from_action
from envdoctor.render.build import ProgressPrinter, outcome_lines

if TYPE_CHECKING:
    from envdoctor.rules import Tables

Echo = Callable[[str], None]


class BuildFailed(Exception):
    """The build did not produce a wheel; the message carries the findings and the log's path."""


def build_wheel(action: Action, dest: Path, echo: Echo, tables: Optional[Tables] = None, stream: Any = None) -> Path:
    """The wheel for `action` in `dest` (copied from envdoctor's cache, built there first if needed)."""
    spec = spec_from_action(action)
    info = action.build
    source: Optional[Path] = Path(info["source"]) if info.get("source") else None
    root = Path(info["cache_root"]) if info.get("cache_root") else None
    printer = ProgressPrinter(stream if stream is not None else sys.stderr, echo)
    if not info.get("cached"):
        echo(f"  building {spec.package} {spec.version} ({spec.device.upper()} kernels, MAX_JOBS={spec.max_jobs}, "
             f"about {spec.estimated_seconds // 60} min); Ctrl-C stops it and changes nothing")
    res = build(spec, source=source, cache_root=root, pip_sources=tuple(action.sources), progress=printer.update,
                announce=lambda log: echo(f"  log: {log} (while it builds; then kept in envdoctor's cache)"))
    printer.done()
    if res.outcome is not None and res.log is not None:
        res.outcome.log = res.log  # the work directory is gone: point at the copy that is kept
    if res.status == "interrupted":
        raise KeyboardInterrupt()
    if res.ok and res.wheel is not None:
        if res.status == "cached":
            echo(f"  cached build: {res.wheel}")
        else:
            for line in outcome_lines(res.outcome) if res.outcome else []:
                echo(f"  {line}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(res.wheel, dest / res.wheel.name))
    lines = outcome_lines(res.outcome) if res.outcome else [f"✗ {res.status}: {res.message}"]
    found = []
    if res.status != "blocked":
        if tables is None:
            from envdoctor.rules import load_tables

            tables = load_tables()
        extra = res.report_extra()
        found = classify(str(extra["log_text"]), tables, status=res.status, log=str(res.log) if res.log else None)
    why = [f"{f.id} {f.title}" + (f" — fix: {f.fixes[0].description}" if f.fixes else "") for f in found]
    raise BuildFailed("\n".join(lines + why))
