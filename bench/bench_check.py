"""How long `envdoctor check` takes, against `python -m torch.utils.collect_env` on the same env.

    python bench/bench_check.py [--python PATH] [--repeat N] [--code DIR]

Runs each command N times, interleaved (so machine load hits both alike), prints the
medians, the ratio check / collect_env (goal <= 0.5), the ratio check / the floor
`python -c "import torch, torchvision"` on the same environment (goal <= 1.05: envdoctor's
own start-up is off the critical path) and the absolute time of `check --quick` (goal <= 0.3 s).
`--code DIR` also times `check` and `check --quick` of the envdoctor package in DIR (an older commit:
`git archive COMMIT envdoctor rules | tar -x -C DIR`), interleaved with the rest: before/after in one run,
on one load. Every command runs in an empty scratch directory, so that `python -m envdoctor` imports the
package PYTHONPATH names (this checkout, or DIR), not one in the current directory.
Not a test: the numbers depend on the machine; run it on an idle one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CWD = tempfile.mkdtemp(prefix="bench-check-")  # `-m` puts the current directory first on sys.path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and all its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=CWD)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="the environment to probe (default: this one)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--code", type=Path, help="also time check and check --quick of the envdoctor package in DIR")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ENVDOCTOR_DEBUG", None)
    # as installed: pip compiles envdoctor's byte-code; a shell with PYTHONDONTWRITEBYTECODE=1 (some CI images,
    # this one) would recompile every module on every run (~40 ms of `check --quick`). The warm-up writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    envs: dict[str, dict[str, str]] = {}
    me = sys.executable
    cmds = {
        "envdoctor check": [me, "-m", "envdoctor", "check", "--python", args.python],
        "collect_env": [args.python, "-m", "torch.utils.collect_env"],
        "envdoctor check --quick": [me, "-m", "envdoctor", "check", "--quick", "--python", args.python],
        "envdoctor check --quick -f json": [me, "-m", "envdoctor", "check", "--quick", "-f", "json", "--python",
                                            args.python],
        "import torch": [args.python, "-c", "import torch"],
        "import torch, torchvision": [args.python, "-c", "import torch, torchvision"],
    }
    if args.code:
        for name in ("envdoctor check", "envdoctor check --quick", "envdoctor check --quick -f json"):
            cmds[f"{name} [--code]"] = cmds[name]
            envs[f"{name} [--code]"] = dict(env, PYTHONPATH=str(args.code.resolve()))
    for name, cmd in cmds.items():  # warm the page cache once, untimed
        timed(cmd, envs.get(name, env))
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeat):
        for name, cmd in cmds.items():
            wall, used = timed(cmd, envs.get(name, env))
            times[name].append(wall)
            cpus[name].append(used)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    print(f"target: {args.python}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; "
          f"{args.repeat} runs each, median (CPU = user+sys of the command and its children)")
    for name in cmds:
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"  {name:<40} wall {med[name]:7.3f} s (range {spread})   CPU {cpu[name]:7.3f} s")
    ratio = med["envdoctor check"] / med["collect_env"]
    print(f"ratio check / collect_env: wall {ratio:.2f}, CPU {cpu['envdoctor check'] / cpu['collect_env']:.2f}"
          "  (goal <= 0.5)")
    floor = med["import torch, torchvision"]
    print(f"ratio check / floor `python -c \"import torch, torchvision\"`: wall {med['envdoctor check'] / floor:.2f}"
          f" ({med['envdoctor check'] - floor:+.3f} s), CPU "
          f"{cpu['envdoctor check'] / cpu['import torch, torchvision']:.2f}  (goal <= 1.05)")
    for name in ("envdoctor check --quick", "envdoctor check --quick -f json"):
        print(f"{name[10:]}: {med[name]:.3f} s wall, {cpu[name]:.3f} s CPU  (goal <= 0.3 s)")
    if args.code:
        old, old_quick = "envdoctor check [--code]", "envdoctor check --quick [--code]"
        old_json = "envdoctor check --quick -f json [--code]"
        print(f"--code {args.code}: check / floor wall {med[old] / floor:.2f}, CPU "
              f"{cpu[old] / cpu['import torch, torchvision']:.2f}; check --quick "
              f"{med[old_quick]:.3f} s wall, {cpu[old_quick]:.3f} s CPU; check --quick -f json "
              f"{med[old_json]:.3f} s wall, {cpu[old_json]:.3f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
