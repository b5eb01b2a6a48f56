"""What a Ctrl-C during `envdoctor check` leaves behind: temporary probe directories and running processes.

    python bench/ctrl_c_leftovers.py --python ENV [--trials N] [--code DIR]

Starts `envdoctor check --python ENV` N times, each with its own TMPDIR and a marker in its environment,
sends a real SIGINT at a moment spread evenly over the first 3 s after its first probe directory appears,
and counts the runs after which a probe directory remained in TMPDIR or a process carrying the marker was
still alive (Linux: reads /proc). `--code DIR` runs the envdoctor package found in DIR instead of this
checkout's (e.g. an older commit unpacked with `git archive COMMIT envdoctor | tar -x -C DIR`), so two
versions can be compared on the same machine in the same run. Not a test: a count, not a timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def marked(value: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if value.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def one(python: str, code: Path, delay: float) -> tuple[bool, int, int]:
    """(interrupted, directories left, processes left) for one SIGINT `delay` s after the probes start."""
    tmp = Path(tempfile.mkdtemp(prefix="ctrl-c-bench-"))
    value = uuid.uuid4().hex
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(code), ENVDOCTOR_BENCH_MARK=value)
    proc = subprocess.Popen([sys.executable, "-m", "envdoctor", "check", "--python", python],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=code)
    end = time.monotonic() + 60
    while time.monotonic() < end and proc.poll() is None and not any(tmp.iterdir()):
        time.sleep(0.002)
    time.sleep(delay)
    interrupted = proc.poll() is None
    if interrupted:
        proc.send_signal(signal.SIGINT)
    proc.wait()
    time.sleep(1.0)  # a killed process may take a moment to go
    left = len(list(tmp.iterdir()))
    alive = marked(value)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)
    return interrupted, left, len(alive)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--code", default=str(ROOT), help="directory holding the envdoctor package to run")
    args = ap.parse_args()
    counts = {"interrupted": 0, "dirs": 0, "procs": 0}
    for i in range(args.trials):
        interrupted, dirs, procs = one(args.python, Path(args.code), 3.0 * i / max(args.trials - 1, 1))
        counts["interrupted"] += interrupted
        counts["dirs"] += bool(dirs) and interrupted
        counts["procs"] += bool(procs) and interrupted
    print(f"code {args.code}: {counts['interrupted']} of {args.trials} runs interrupted; after "
          f"{counts['dirs']} of them a probe directory remained, after {counts['procs']} a probe process "
          "was still running")


if __name__ == "__main__":
    main()
