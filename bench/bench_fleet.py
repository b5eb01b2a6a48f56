"""How long `envdoctor fleet summarize` takes on 10,000 reports, and what collecting adds to a launcher run.

    python bench/bench_fleet.py [--reports N] [--seed S] [--nodes 8]

1. Summarize: N members' records (one launcher log, as `fleet run` reads it) made from the recorded
   real reports (tests/data/reports, tests/data/facts/real_*.json, and the GPU fact sets run through
   the checks) with seeded variations: ~90 % one majority environment, the rest spread over
   variants (driver, Python, torch build, a failing import, findings). Runs `envdoctor fleet
   summarize LOG --format json` in a fresh process; prints its wall time and peak memory (goal
   <= 5 s, <= 1 GB), and the ratio to the anchor: the same process only decoding the N reports
   (zlib + base64 + json), the floor any summary of them sits on.
2. Collecting: `pdsh -R exec -w node[01-K]` running `check --quick --format json` on K nodes (the
   anchor: the launcher and the slowest check alone) vs `envdoctor fleet run --quick` of the same
   (goal: <= 1 s more). Skipped when pdsh is not installed.
Not a test: the numbers depend on the machine; run it on an idle one. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envdoctor.fleet import record  # noqa: E402
from envdoctor.fleet.member import trim_for_fleet  # noqa: E402

PLACEHOLDER = "NODEPLACEHOLDER"


def recorded() -> list[dict]:
    from envdoctor.facts import Report
    from envdoctor.rules import load_tables
    from tests.diagnosed import diagnosed

    out = [json.loads(p.read_text()) for p in sorted((ROOT / "tests/data/reports").glob("*.json"))]
    tables = load_tables()
    for p in sorted((ROOT / "tests/data/facts").glob("*.json")):
        out.append(diagnosed(Report.from_dict(json.loads(p.read_text())), tables).to_dict())
    return out


def variants(base: list[dict], rng: random.Random, n: int) -> list[dict]:
    """n distinct environments: recorded reports, some with a seeded change."""
    out = []
    for i in range(n):
        r = copy.deepcopy(base[i % len(base)])
        kind = rng.choice(["driver", "python", "torch", "load", "finding", "none"])
        if kind == "driver":
            r["gpu"]["driver_version"] = f"{rng.choice([470, 535, 550, 570])}.{rng.randint(10, 99)}.{rng.randint(1, 9)}"
        elif kind == "python":
            r["python"]["version"] = f"3.{rng.randint(8, 13)}.{rng.randint(0, 15)}"
        elif kind == "torch" and "torch" in r["components"]:
            r["components"]["torch"]["version"] = f"2.{rng.randint(1, 14)}.{rng.randint(0, 2)}+cu12{rng.randint(1, 8)}"
        elif kind == "load" and r["components"]:
            name = rng.choice(sorted(r["components"]))
            r["components"][name]["load"] = {"status": "import_error", "seconds": 0.1, "cause": None, "stdout_bytes": 0,
                                             "error": {"type": "ImportError", "message": f"undefined symbol: _Z{i}"}}
        elif kind == "finding":
            r["findings"].append({"id": "ED102", "name": "driver", "severity": "error", "component": "driver",
                                  "title": f"driver too old ({i})", "detail": "", "evidence": {}, "fixes": []})
        out.append(r)
    return out


def make_log(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    envs = variants(recorded(), rng, 60)
    majority = envs[0]
    encoded = {}
    with open(path, "w") as f:
        for i in range(n):
            k = 0 if rng.random() < 0.9 else rng.randrange(1, len(envs))
            if k not in encoded:
                rep = majority if k == 0 else envs[k]
                # what a member sends: the report trimmed as `check --fleet-member` trims it
                sent = trim_for_fleet(copy.deepcopy(rep))
                encoded[k] = "".join(record.report_lines("bench", PLACEHOLDER, None, sent))
            node = f"node{i + 1:05d}"
            f.write(record.hello_line("bench", node, None, None, "0"))
            f.write(encoded[k].replace(PLACEHOLDER, node))
            f.write(record.bye_line("bench", node, None, 0))


ANCHOR = """
import sys
from envdoctor.fleet import record
parts, n = {}, 0
with open(sys.argv[1]) as f:
    for line in f:
        rec = record.parse_line(line)
        if rec is not None and rec.kind == "part":
            got = parts.setdefault(rec.key, {})
            got[rec.info["i"]] = rec.info["d"]
            if len(got) == rec.info["of"]:
                record.unpack(parts.pop(rec.key), rec.info["sha"])
                n += 1
print(n)
"""


def child(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the child, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd] if shutil.which("time") else cmd,
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    try:
        peak = int(proc.stderr.strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, peak, proc.stdout


def bench_summarize(n: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "fleet.log"
        t0 = time.perf_counter()
        make_log(log, n, seed)
        print(f"made {n} members' records ({log.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
        a_wall, a_peak, a_out = child([sys.executable, "-c", ANCHOR, str(log)])
        s_wall, s_peak, s_out = child([sys.executable, "-m", "envdoctor", "fleet", "summarize", str(log),
                                       "--format", "json", "--names", str(Path(tmp) / "names.json")])
        summary = json.loads(s_out)
        print(f"anchor (decode {a_out.strip()} reports only): {a_wall:.2f} s, peak {a_peak:.0f} MiB")
        print(f"fleet summarize {summary['reported']} reports, {len(summary['groups'])} groups: "
              f"{s_wall:.2f} s (goal <= 5 s), peak {s_peak:.0f} MiB (goal <= 1024 MiB)")
        print(f"ratio summarize / anchor: time {s_wall / a_wall:.2f}, memory {s_peak / a_peak:.2f}")


def bench_collect(k: int) -> None:
    if not shutil.which("pdsh"):
        print("collect: skipped (pdsh not installed)")
        return
    member = [sys.executable, "-m", "envdoctor"]
    launcher = ["pdsh", "-R", "exec", "-w", f"node[01-{k:02d}]", "env", "ENVDOCTOR_FLEET_NODE=%h"]
    plain = launcher + member + ["check", "--quick", "--format", "json"]
    fleet = [*member, "fleet", "run", "--quick", "--no-redact", "--member-command", " ".join(member), "--", *launcher]
    walls: dict[str, list[float]] = {"plain": [], "fleet": []}
    for _ in range(3):  # interleaved, so load hits both alike
        for name, cmd in (("plain", plain), ("fleet", fleet)):
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
            walls[name].append(time.perf_counter() - start)
    p, f = sorted(walls["plain"])[1], sorted(walls["fleet"])[1]
    print(f"collect on {k} nodes (pdsh -R exec, check --quick): launcher alone {p:.2f} s, fleet run {f:.2f} s, "
          f"added {f - p:+.2f} s (goal <= 1 s), ratio {f / p:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--nodes", type=int, default=8)
    args = ap.parse_args()
    bench_summarize(args.reports, args.seed)
    bench_collect(args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
