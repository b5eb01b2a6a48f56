"""How long `envdoctor fix` takes, against one `envdoctor check` of the same environment.

    python bench/bench_fix.py [--env NAME] [--repeat N] [--code DIR] [--keep DIR]

Clones the cached real test environment NAME (tests/envs.py, default `mmcv-lite`: torch 2.13 + mmcv-lite
2.2.0, where `--strategy compat` applies) and times, interleaved (so machine load hits all alike): `check`,
the dry run `fix --strategy compat`, `fix --apply --yes --strategy compat`, then `check` of the repaired
environment (then, untimed, `fix --undo`, so every round starts from the same environment). Prints the
medians and the ratios fix --apply / check (goal <= 1.3: probe before, install, one verification probe),
dry run / check (goal <= 1.05), and fix --apply / (check + check of the repaired environment): the
verification imports what the fix made importable, which the broken environment's check never imported.
Also times, in the repaired environment, the verification's import chain alone (`import torch`, then what
`from mmcv.ops import ...` needs: mmengine and the rest) in one fresh process: a bound on fix --apply.
`--code DIR` also times the same commands of the envdoctor package in DIR (e.g. an unpacked `git archive`
of an older commit), interleaved: before/after in one run, on one load.
Not a test: the numbers depend on the machine; run it on an idle one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.envs import copy_venv, get_env  # noqa: E402


# what the compat fix's verification imports in the target (fix/plan.py: its verify statement)
VERIFY_IMPORT = "from mmcv.ops import ModulatedDeformConv2dPack"
FLOOR = "verify import chain, repaired"


def run(cmd: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0, 1)) -> float:
    # cwd outside the tree: `python -m` puts the working directory first on sys.path, before PYTHONPATH
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout.decode()[-1500:]}\n"
                         f"{proc.stderr.decode()[-1500:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="mmcv-lite", help="the cached test environment to clone (tests/envs.py)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--code", type=Path, help="also time the envdoctor package in DIR (before/after in one run)")
    ap.add_argument("--keep", type=Path, help="clone into this directory (default: a temporary one, removed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fix-")) if args.keep is None else args.keep
    prefix = work / args.env
    # hard links (a compat fix only adds files, and undo removes them: the cached env is never written)
    copy_venv(get_env(args.env), prefix, link=True)
    python = str(prefix / "bin" / "python")
    # as installed, with byte-code (a shell with PYTHONDONTWRITEBYTECODE=1 recompiles envdoctor every run)
    base = {k: v for k, v in os.environ.items() if k not in ("ENVDOCTOR_DEBUG", "PYTHONDONTWRITEBYTECODE")}
    codes = {"": dict(base, PYTHONPATH=str(ROOT))}
    if args.code:
        codes[" [--code]"] = dict(base, PYTHONPATH=str(args.code.resolve()))
    me = [sys.executable, "-m", "envdoctor"]
    steps = {
        "check": ["check", "--python", python],
        "fix (dry run)": ["fix", "--python", python, "--strategy", "compat"],
        "fix --apply": ["fix", "--python", python, "--strategy", "compat", "--apply", "--yes"],
    }
    times: dict[str, list[float]] = {f"{s}{c}": [] for c in codes for s in [*steps, "check, repaired"]}
    times[FLOOR] = []
    target_env = {k: v for k, v in base.items() if k != "PYTHONPATH"}
    try:
        run(me + steps["check"], codes[""], work)  # warm the page cache once, untimed
        load_before = os.getloadavg()[0]
        for _ in range(args.repeat):
            for suffix, env in codes.items():
                for name, argv in steps.items():
                    times[f"{name}{suffix}"].append(run(me + argv, env, work, ok=(0,) if "apply" in name else (0, 1)))
                    if "apply" in name:
                        # check of the repaired environment: its probe imports what the fix made importable
                        # (mmcv.ops in full), as the verification must; then back to the broken one, untimed
                        times[f"check, repaired{suffix}"].append(run(me + steps["check"], env, work))
                        if not suffix:  # the verification's own import chain, in one fresh process of the target
                            times[FLOOR].append(run([python, "-c", VERIFY_IMPORT], target_env, work))
                        run(me + ["fix", "--python", python, "--undo"], env, work, ok=(0,))
        med = {k: statistics.median(v) for k, v in times.items() if v}
        print(f"target: clone of test env {args.env!r} ({python})")
        print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; "
              f"{args.repeat} runs each, interleaved, median wall time")
        for name, vals in times.items():
            print(f"  {name:<28} {med[name]:7.3f} s (range {min(vals):.3f}-{max(vals):.3f})")
        for suffix in codes:
            check = med[f"check{suffix}"]
            print(f"ratios{suffix or ' (this tree)'}: fix --apply / check {med[f'fix --apply{suffix}'] / check:.2f} "
                  f"(goal <= 1.3); dry run / check {med[f'fix (dry run){suffix}'] / check:.2f} (goal <= 1.05); "
                  f"fix --apply / (check + check of the repaired env) "
                  f"{med[f'fix --apply{suffix}'] / (check + med[f'check, repaired{suffix}']):.2f}")
        floor = med[FLOOR] / med["check"]
        print(f"floor: the repaired env's `python -c {VERIFY_IMPORT!r}` (import torch, then what mmcv.ops needs: "
              f"one chain no design can split) / check {floor:.2f}: fix --apply can be no quicker"
              + (", so the goal 1.3 cannot be met on this machine" if floor > 1.3 else ""))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
