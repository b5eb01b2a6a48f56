"""Demanglers on real torch symbols, against the reference tools (docs/inspect.md "Demangling").

    PYTHONPATH=. nice python bench/bench_demangle.py [--sample N]

MSVC names: every export of torch 2.5.1's Windows c10.dll and torch_cpu.dll (tests/winwheel.py's cached
wheel), reference `llvm-undname`. Itanium names: the defined dynamic symbols of the installed (Linux)
torch's libc10.so and libtorch_cpu.so, reference `c++filt`. For each demangler that is importable
(envdoctor's own subset, the `demangle` package, `itanium_demangler`, `pydemumble`): how many names it
reads exactly as the reference does (spaces ignored), differently, not at all, or raises on, and its
time as a ratio against the reference tool's in the same run.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional

from envdoctor.binary import demangle as ours
from envdoctor.binary import pe


def _reference(tool: list[str], names: list[str], triples: bool) -> tuple[dict[str, str], float]:
    t = time.perf_counter()
    out = subprocess.run(tool, input="\n".join(names) + "\n", capture_output=True, text=True).stdout
    secs = time.perf_counter() - t
    lines = out.split("\n")
    if triples:  # llvm-undname echoes each name, then its reading, then a blank line
        wanted = set(names)
        return {lines[i]: lines[i + 1] for i in range(len(lines) - 1) if lines[i] in wanted}, secs
    return dict(zip(names, lines)), secs


def _candidates() -> dict[str, Callable[[str], Optional[str]]]:
    out: dict[str, Callable[[str], Optional[str]]] = {
        "envdoctor subset": lambda n: ours.msvc_subset(n) if n.startswith("?") else ours.itanium_subset(n)}
    for mod, attr in (("demangle", "demangle"), ("pydemumble", "demangle")):
        try:
            out[mod] = getattr(importlib.import_module(mod), attr)
        except ImportError:
            pass
    try:
        itd = importlib.import_module("itanium_demangler")
        out["itanium_demangler"] = lambda n: (None if n.startswith("?") else str(itd.parse(n)))
    except ImportError:
        pass
    return out


def _score(name: str, fn: Callable[[str], Optional[str]], ref: dict[str, str], ref_secs: float) -> None:
    exact = other = none = raised = 0
    t = time.perf_counter()
    for n, want in ref.items():
        try:
            got = fn(n)
        except Exception:  # noqa: BLE001 - counted
            raised += 1
            continue
        if not got or got == n:
            none += 1 if want != n else 0
            exact += 1 if want == n else 0
        elif got.replace(" ", "") == want.replace(" ", ""):
            exact += 1
        else:
            other += 1
    secs = time.perf_counter() - t
    print(f"  {name:18s} exact {exact:6d}  different {other:6d}  unread {none:6d}  raised {raised:5d}  "
          f"time x{secs / max(ref_secs, 1e-6):.0f} of the reference")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=1, help="take every N-th name")
    a = ap.parse_args()
    sys.path.insert(0, os.getcwd())
    from tests.winwheel import member

    msvc = sorted({n for dll in ("c10.dll", "torch_cpu.dll")
                   for n in pe.read(str(member(f"torch/lib/{dll}"))).exports if n.startswith("?")})[::a.sample]
    import torch  # the Linux torch of this venv: its libraries' Itanium names

    libs = [p for p in glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "lib*.so"))
            if os.path.basename(p) in ("libc10.so", "libtorch_cpu.so")]
    nm = subprocess.run(["nm", "-D", "--defined-only", *libs], capture_output=True, text=True).stdout
    itanium = sorted({ln.split()[-1] for ln in nm.splitlines() if ln.split() and ln.split()[-1].startswith("_Z")})
    itanium = itanium[::a.sample]
    for label, names, tool, triples in (("MSVC", msvc, "llvm-undname", True), ("Itanium", itanium, "c++filt", False)):
        exe = shutil.which(tool)
        if exe is None:
            print(f"{label}: {tool} not installed, skipped")
            continue
        ref, secs = _reference([exe], names, triples)
        print(f"{label}: {len(ref)} names, reference {tool} {secs:.2f} s")
        for name, fn in _candidates().items():
            if label == "MSVC" and name == "itanium_demangler":
                continue
            _score(name, fn, ref, secs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
