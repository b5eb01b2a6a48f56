"""Text for `fix --strategy build`: what will be built and why, the live progress line, the outcome.
Formats only; decides nothing."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from envdoctor.build.runner import BuildOutcome, BuildProgress
from envdoctor.build.spec import BuildSpec


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def spec_lines(spec: BuildSpec, log: Optional[str] = None) -> list[str]:
    """The plan's description of a build: what, for which torch, with what, how long, where the log goes."""
    kernels = "CUDA + CPU" if spec.device == "cuda" else "CPU only"
    out = [f"build {spec.package} {spec.version} with compiled ops ({kernels}) against torch {spec.torch_version}"
           f" ({spec.python_tag}, {spec.platform_tag or 'this platform'})",
           f"  version:    {spec.why.get('version', '')}",
           f"  kernels:    {spec.why.get('device', '')}"]
    if spec.device == "cuda":
        out.append(f"  arch list:  {';'.join(spec.arch_list) or '(none)'}  ({spec.why.get('arch_list', '')})")
        out.append(f"  CUDA_HOME:  {spec.cuda_home or '(none)'}  ({spec.why.get('cuda_home', 'no nvcc')})")
    out.append(f"  compiler:   {spec.compiler or '(none found)'}")
    out.append(f"  jobs:       MAX_JOBS={spec.max_jobs}  ({spec.why.get('jobs', '')})")
    out.append(f"  time:       about {_duration(spec.estimated_seconds)}  ({spec.why.get('time', '')})")
    out.append(f"  build tools: {', '.join(spec.requirements)} in a private overlay (never installed into the "
               "environment); no build isolation, so the build uses this environment's torch")
    if log:
        out.append(f"  log:        {log}")
    out += [f"  note: {n}" for n in spec.notes]
    out += [f"  ✗ cannot build: {b}" for b in spec.blockers]
    return out


def progress_line(p: BuildProgress) -> str:
    pct = f" {100 * p.done // p.total:3d}%" if p.total else ""
    return f"building {_duration(p.elapsed)} [{p.done}/{p.total}]{pct}"


def outcome_lines(o: BuildOutcome) -> list[str]:
    if o.status == "built":
        return [f"✓ built in {_duration(o.seconds)} ({o.units_total} compile units): {o.wheel}", f"  log: {o.log}"]
    if o.status == "interrupted":
        return [f"! build interrupted after {_duration(o.seconds)} at [{o.units_done}/{o.units_total}]; nothing was "
                "installed, the environment is unchanged", f"  log: {o.log}"]
    head = ("✗ the build produced no compiled extension" if o.status == "no-ops"
            else f"✗ the build failed after {_duration(o.seconds)} (exit {o.returncode})")
    out = [head, f"  log: {o.log}"]
    if o.errors:
        out += ["  first errors:"] + [f"    {ln}" for ln in o.errors]
    return out + ["  last lines:"] + [f"    {ln}" for ln in o.tail[-12:]]


class ProgressPrinter:
    """The live `building 3m12s [17/77]  22%` line: rewritten in place on a terminal; on a pipe or a
    log, one line per tenth of the units (or per minute), so a CI log stays short."""

    def __init__(self, stream: Any, echo: Callable[[str], None]) -> None:
        self.stream = stream
        self.echo = echo
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.shown = False
        self.last_step = -1
        self.last_time = 0.0

    def update(self, p: BuildProgress) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last_time >= 0.5 or p.done == p.total:
                self.stream.write("\r  " + progress_line(p) + "\033[K")
                self.stream.flush()
                self.shown, self.last_time = True, now
            return
        step = 10 * p.done // p.total if p.total else 0
        if step != self.last_step or now - self.last_time >= 60:
            self.echo("  " + progress_line(p))
            self.last_step, self.last_time = step, now

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
