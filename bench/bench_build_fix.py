"""`envdoctor fix --strategy build --cpu --apply` installing mmcv from envdoctor's build cache, end to end
(probe, plan, lock, journal, backup, pip, fresh probe, ops verification), against the compat strategy's
`fix --apply` on a twin copy of the same environment in the same run (the anchor), then `fix --undo`.

    PYTHONPATH=. nice python bench/bench_build_fix.py --env ENV_PREFIX [--cache DIR]

ENV_PREFIX is a torch 2.13 CPU + mmcv-lite 2.2.0 venv (tests/envs.py `mmcv-lite`); it is not changed: the
runs work on copies (torch, sympy and cv2 symlinked, as tests/test_fix_recover.py does). The cached
wheel must be there (tests/mmcv_build.py puts it there); its entry.json says how long its build took.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = ("torch", "sympy", "cv2", "opencv_python.libs")


def clone(src: Path, dest: Path) -> Path:
    site = next(src.glob("lib/python3*/site-packages"))
    shutil.copytree(src, dest, symlinks=True, ignore=lambda d, names: [n for n in names
                                                                       if Path(d) == site and n in SHARED])
    for n in SHARED:
        if (site / n).exists():
            (dest / site.relative_to(src) / n).symlink_to(site / n)
    return dest


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "envdoctor", *args], capture_output=True, text=True, env=env)
    return time.monotonic() - t0, proc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", required=True)
    ap.add_argument("--cache", default=None)
    a = ap.parse_args()
    env = dict(os.environ)
    if a.cache:
        env["ENVDOCTOR_BUILD_CACHE"] = a.cache
    src = Path(a.env)
    with tempfile.TemporaryDirectory(prefix="bench-build-fix-") as tmp:
        one, two = clone(src, Path(tmp) / "a"), clone(src, Path(tmp) / "b")
        t_compat, p = timed(["fix", "--python", str(one), "--strategy", "compat", "--apply", "--yes"], env)
        assert p.returncode == 0, p.stdout + p.stderr
        t_build, p = timed(["fix", "--python", str(two), "--strategy", "build", "--cpu", "--apply", "--yes"], env)
        assert p.returncode == 0 and "cached build:" in p.stdout, p.stdout + p.stderr
        wheel = next(line.split("cached build: ", 1)[1].strip() for line in p.stdout.splitlines()
                     if "cached build: " in line)
        entry = json.loads((Path(os.path.expanduser(wheel)).parent / "entry.json").read_text())
        t_undo, p = timed(["fix", "--python", str(two), "--undo"], env)
        assert p.returncode == 0, p.stdout + p.stderr
    print(f"fix --strategy compat --apply (anchor)              {t_compat:7.1f} s   1.00x")
    print(f"fix --strategy build --cpu --apply (from the cache) {t_build:7.1f} s   {t_build / t_compat:.2f}x")
    print(f"fix --undo of the build                             {t_undo:7.1f} s   {t_undo / t_compat:.2f}x")
    print(f"the cached wheel's own build (entry.json)           {entry.get('build_seconds'):7.1f} s   "
          f"{entry.get('build_seconds') / t_compat:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
