"""The facts `fix --strategy build` plans from, gathered before planning so that planning stays pure:
the decided BuildSpec, whether envdoctor's cache already holds its wheel, and the source to build.

Reads the build host (cores, memory, disk, `c++ --version` through probe/buildhost), the cache entry
and the source's file list; writes nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from envdoctor.build import cache
from envdoctor.build.runner import count_sources, count_units
from envdoctor.build.spec import BuildSpec, decide
from envdoctor.fact_readers import torch_cuda
from envdoctor.facts import Report
from envdoctor.probe.buildhost import probe_build_host

if TYPE_CHECKING:
    from envdoctor.rules import Tables


@dataclass
class BuildChoice:
    spec: Optional[BuildSpec]  # None: nothing can be decided (`error` says why)
    cache_root: str
    cached: Optional[str] = None  # the wheel in envdoctor's cache for exactly this spec
    source: Optional[str] = None  # --source: a directory (checkout) or an sdist; None = the index's sdist
    error: Optional[str] = None


def gather(report: Report, tables: Tables, *, cpu: bool = False, source: Optional[str] = None,
           version: Optional[str] = None, cache_root: Optional[Path] = None) -> BuildChoice:
    root = cache_root or cache.cache_root()
    src = Path(source).expanduser().resolve() if source else None
    device = "cpu" if cpu or not torch_cuda(report) else "cuda"
    units = (count_units(src, device) or count_sources(src)) if src is not None else None
    try:
        # the build's work directory is a temporary one: its free space is what the build needs
        spec = decide(report, tables, probe_build_host(tempfile.gettempdir()), cpu=cpu, version=version,
                      units=units)
    except LookupError as exc:
        return BuildChoice(None, str(root), source=str(src) if src else None, error=str(exc))
    hit = cache.lookup(spec, root)
    return BuildChoice(spec, str(root), cached=str(hit) if hit else None, source=str(src) if src else None)
