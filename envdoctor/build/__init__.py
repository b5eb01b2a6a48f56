"""`fix --strategy build`: compile mmcv's real ops for exactly this environment.

    spec.decide(report, tables, host)  -> BuildSpec   what to build, and why (pure)
    build(spec, ...)                   -> BuildResult  a wheel in envdoctor's cache, or why not

`build` never writes to the target environment: the build requirements go to a private
overlay, the wheel to a private directory and then to envdoctor's cache. Installing that wheel
is the transaction's job (the same lock/journal/backup/verify as the wheel strategy).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from envdoctor.build import cache
from envdoctor.build.overlay import make_overlay
from envdoctor.build.runner import BuildOutcome, Progress, fetch_sdist, run_build
from envdoctor.build.spec import BuildSpec
from envdoctor.probe.buildhost import msvc_environment, vcvars_script


@dataclass
class BuildResult:
    status: str  # cached | built | failed | no-ops | interrupted | blocked
    wheel: Optional[Path]  # the wheel in envdoctor's cache (cached | built)
    log: Optional[Path]  # the build log (kept beside the cached wheel, or in the work directory)
    outcome: Optional[BuildOutcome] = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("cached", "built")

    def report_extra(self) -> dict[str, object]:
        """What `report.build` holds for the ED8xx checks (the log's text included)."""
        text = ""
        if self.log is not None and self.log.is_file():
            text = self.log.read_text(encoding="utf-8", errors="replace")[-200_000:]
        return {"status": self.status, "log": str(self.log) if self.log else None, "log_text": text,
                "tail": self.outcome.tail if self.outcome else [], "message": self.message}


def build(spec: BuildSpec, *, source: Optional[Path] = None, work_dir: Optional[Path] = None,
          cache_root: Optional[Path] = None, pip_sources: tuple[str, ...] = (),
          progress: Optional[Progress] = None, use_cache: bool = True,
          announce: Optional[Callable[[Path], None]] = None) -> BuildResult:
    """Build `spec` (from `source`, a directory or an sdist; else the sdist from the index) with the
    target's interpreter, or take it from envdoctor's cache. `pip_sources` are pip arguments for where
    the build requirements and the sdist come from (--index-url ..., --no-index --find-links DIR).
    `announce` gets the log's path before anything runs (the user can follow it while it builds)."""
    if use_cache:  # a wheel built for exactly this key needs no compiler, toolkit or disk: blockers do not apply
        hit = cache.lookup(spec, cache_root)
        if hit is not None:
            return BuildResult("cached", hit, hit.parent / "build.log", message=f"cached build {hit}")
    if spec.blockers:
        return BuildResult("blocked", None, None, message="; ".join(spec.blockers))
    own_work = work_dir is None
    work = work_dir or Path(tempfile.mkdtemp(prefix="envdoctor-build-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    if announce is not None:
        announce(log)
    try:
        overlay = make_overlay(spec.python, work / "overlay", spec.requirements, pip_sources)
        if source is None:
            source = fetch_sdist(spec.python, f"{spec.package}=={spec.version}", overlay, work / "sdist",
                                 list(pip_sources), log)
        build_env = spec.build_env()
        if spec.msvc_install:  # Windows: the compiler's own environment, as a Developer prompt would have it
            msvc = msvc_environment(spec.msvc_install)
            if msvc is None:
                return BuildResult("failed", None, None,
                                   message=f"ED806: {vcvars_script(spec.msvc_install)} did not set up an MSVC x64 "
                                   "environment (INCLUDE/LIB missing); repair the Visual Studio C++ build tools, or "
                                   "run from an 'x64 Native Tools' prompt")
            build_env = {**msvc, **build_env}
        outcome = run_build(spec.python, source, overlay, build_env, work / "build", log, progress)
        if outcome.ok and outcome.wheel is not None:
            wheel = cache.store(spec, outcome.wheel, log, cache_root, outcome.seconds)
            return BuildResult("built", wheel, wheel.parent / "build.log", outcome)
        kept = _keep_log(log, cache_root, spec) if own_work else log
        return BuildResult(outcome.status, None, kept, outcome)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _keep_log(log: Path, cache_root: Optional[Path], spec: BuildSpec) -> Optional[Path]:
    """A failed build's log outlives its temporary work directory (the user will want to read it)."""
    if not log.is_file():
        return None
    dest_dir = (cache_root or cache.cache_root()) / "failed"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{spec.package}-{spec.version}-{cache.key_digest(cache.cache_key(spec))}.log"
    shutil.copy2(log, dest)
    return dest
