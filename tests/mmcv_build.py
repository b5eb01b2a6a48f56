"""The real mmcv 2.2.0 wheel with CPU ops for the cached torch 2.13 CPU environments, in envdoctor's own build
cache (ENVDOCTOR_BUILD_CACHE, default ~/.cache/envdoctor-build-wheels): looked up, or built for real when the
cache is cold (the sdist and the build requirements from the configured index, like tests/envs.py builds its
environments; ~16 min on 2 idle cores, 35 min on 2 loaded ones).

`python -m tests.mmcv_build` is what tests/run.sh starts in the background, nice'd, before pytest; the
end-to-end test calls `ensure()`, which waits on the same file lock and finds the wheel (or builds it itself).
"""

from __future__ import annotations

import fcntl
import signal
import sys
import time
from pathlib import Path

from tests.envs import get_env, python_in

ENV = "mmcv-lite"  # torch 2.13.0+cpu + mmcv-lite 2.2.0: the end-to-end test's environment


def ensure(log=print) -> tuple[Path, str, float]:
    """(the cached wheel, "cached" | "built", seconds spent here); raises if the build fails."""
    from envdoctor.build import build, cache
    from envdoctor.build.spec import decide
    from envdoctor.probe import collect
    from envdoctor.probe.buildhost import probe_build_host
    from envdoctor.render.build import outcome_lines, progress_line
    from envdoctor.rules import load_tables

    start = time.monotonic()
    env = get_env(ENV)
    root = cache.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".mmcv-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per cache; waiters find its wheel
        report = collect(str(python_in(env)), timeout=300)
        spec = decide(report, load_tables(), probe_build_host(), cpu=True)
        hit = cache.lookup(spec)
        if hit is not None:
            return hit, "cached", time.monotonic() - start
        log(f"building {spec.package} {spec.version} for torch {spec.torch_version} into {cache.cache_root()} "
            f"(MAX_JOBS={spec.max_jobs}, about {spec.estimated_seconds // 60} min)")
        steps: set[int] = set()

        def progress(p) -> None:
            if p.total and 10 * p.done // p.total not in steps:
                steps.add(10 * p.done // p.total)
                log(progress_line(p))

        res = build(spec, progress=progress, announce=lambda path: log(f"log: {path}"))
        if not res.ok or res.wheel is None:
            lines = outcome_lines(res.outcome) if res.outcome else [res.message]
            raise RuntimeError(f"the real mmcv build failed ({res.status}):\n" + "\n".join(lines))
        return res.wheel, "built", time.monotonic() - start


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the build runner then stops every compiler job of its session


if __name__ == "__main__":
    # started with `&` by a non-interactive shell (tests/run.sh), SIGINT arrives ignored; and CI ends jobs with
    # SIGTERM: both must stop the build's whole session, not leave compiler jobs running
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    wheel, how, seconds = ensure(lambda m: print(m, flush=True))
    print(f"{how}: {wheel} ({seconds:.0f} s)", flush=True)
    sys.exit(0)
