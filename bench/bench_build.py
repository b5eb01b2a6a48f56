"""One real mmcv build with CPU ops through envdoctor's build runner, and the install from its cache.

    PYTHONPATH=. nice python bench/bench_build.py --python ENV/bin/python [--cache DIR] [--version 2.2.0]

Prints the plan's description of the build, a progress line per compile unit, the wall time, the peak
memory of the whole build (every process under this one, sampled every 0.5 s) and of the largest single
job, then the time to install the wheel from envdoctor's cache (pip --target into a scratch directory,
cache bypassed), as a ratio against the build measured in this same run. A second run finds the wheel
in the cache and skips the build (then the build figures are those of the cached entry's log).
Finally it loads the built `_ext` in the target with its torch and runs nms and roi_align on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from envdoctor.build import build, cache
from envdoctor.build.runner import BuildProgress, count_units, fetch_sdist
from envdoctor.build.overlay import make_overlay
from envdoctor.build.spec import decide
from envdoctor.probe import collect
from envdoctor.probe.buildhost import probe_build_host
from envdoctor.render.build import outcome_lines, progress_line, spec_lines
from envdoctor.rules import load_tables

CHECK = r"""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("mmcv._ext", sys.argv[1])
ext = importlib.util.module_from_spec(spec); spec.loader.exec_module(ext)
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
keep = ext.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5, 0)
feat = torch.arange(16.).reshape(1, 1, 4, 4); rois = torch.tensor([[0., 0., 0., 3., 3.]])
out = torch.zeros(1, 1, 2, 2); argmax_y = torch.zeros(1, 1, 2, 2); argmax_x = torch.zeros(1, 1, 2, 2)
ext.roi_align_forward(feat, rois, out, argmax_y, argmax_x, 2, 2, 1.0, 0, 1, True)
print("nms keep", keep.tolist(), "roi_align", out.flatten().tolist(), "torch", torch.__version__,
      "compiler", ext.get_compiler_version(), "cuda", ext.get_compiling_cuda_version())
"""


class TreeMemory(threading.Thread):
    """Peak resident memory of all descendants of this process (sum, and the largest single one)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_sum = self.peak_one = 0
        self.stop = False

    def run(self) -> None:
        me = os.getpid()
        while not self.stop:
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    with open(f"/proc/{name}/stat") as f:
                        parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
                    with open(f"/proc/{name}/statm") as f:
                        rss[int(name)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    continue
            total = one = 0
            for pid in rss:
                p, hops = pid, 0
                while p not in (0, 1, me) and hops < 64:
                    p, hops = parents.get(p, 0), hops + 1
                if p == me and pid != me:
                    total += rss[pid]
                    one = max(one, rss[pid])
            self.peak_sum, self.peak_one = max(self.peak_sum, total), max(self.peak_one, one)
            time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--cache", default=str(cache.cache_root()))
    ap.add_argument("--version", default=None)
    args = ap.parse_args()
    root = Path(args.cache)
    tables = load_tables()
    report = collect(args.python, timeout=120)
    host = probe_build_host(str(root.parent if root.parent.exists() else "/"))
    spec = decide(report, tables, host, cpu=True, version=args.version)
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    # the real sdist first, so that the estimate counts its units
    overlay = make_overlay(spec.python, work / "overlay", spec.requirements)
    sdist = fetch_sdist(spec.python, f"{spec.package}=={spec.version}", overlay, work / "sdist", [], log)
    spec = decide(report, tables, host, cpu=True, version=spec.version, units=count_units(sdist, "cpu"))
    print("\n".join(spec_lines(spec, str(log))), flush=True)
    last = [0]

    def show(p: BuildProgress) -> None:
        if p.done != last[0]:
            last[0] = p.done
            print(progress_line(p), flush=True)

    mem = TreeMemory()
    mem.start()
    start = time.monotonic()
    res = build(spec, source=sdist, work_dir=work / "run", cache_root=root, progress=show)
    wall = time.monotonic() - start
    mem.stop = True
    if res.outcome is not None:
        print("\n".join(outcome_lines(res.outcome)), flush=True)
    print(f"status {res.status}  wall {wall:.0f} s  peak memory of the build tree {mem.peak_sum / 2**20:.0f} MiB, "
          f"largest single process {mem.peak_one / 2**20:.0f} MiB  (MAX_JOBS={spec.max_jobs}, {host.cores} cores)")
    if not res.ok or res.wheel is None:
        return 1
    entry = json.loads((res.wheel.parent / "entry.json").read_text())
    build_seconds = entry.get("build_seconds") or wall
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        hit = cache.lookup(spec, root)
        lookup_s = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run([spec.python, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", "--no-index",
                        "--target", tmp, str(hit)], check=True)
        install_s = time.monotonic() - t0
        ext = next(Path(tmp, "mmcv").glob("_ext*.so"))
        check = subprocess.run([spec.python, "-c", CHECK, str(ext)], capture_output=True, text=True)
    print(f"cache lookup {lookup_s:.2f} s + install from cache {install_s:.1f} s vs build {build_seconds:.0f} s: "
          f"{build_seconds / (lookup_s + install_s):.0f}x faster")
    print(check.stdout.strip() or check.stderr.strip()[-800:])
    print(f"wheel {res.wheel}\nlog {res.log}")
    return 0 if check.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
