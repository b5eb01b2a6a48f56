"""Per-call overhead of the deformable convolution's ``auto`` backend choice, on CPU.

Usage:  PYTHONPATH=. python bench/bench_dispatch.py [--reps 2000] [--rounds 7]

On a GPU a 0.3 ms call (E2FGVI-HQ's alignment on an H200) shows every microsecond the
Python around the kernel spends.  There is no GPU here, so this measures that Python part on
CPU at a tiny shape (1x4x5x5, 3x3, where the kernel itself is short): the public
``modulated_deform_conv2d(..., backend="auto")`` and ``backend="torch"`` / ``"torchvision"``
against the chosen backend called directly with prepared arguments (the anchor:
``DeformConvTorch.apply`` resp. ``run_torchvision``), forward with autograd recording, as
a training step calls it.  Prints microseconds per call and the ratio to the anchor (best
of --rounds rounds, variants interleaved).  The CUDA figure itself cannot be measured here.
"""

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from envdoctor.compat import ops  # noqa: E402
from envdoctor.compat.dcn_torch import DeformConvTorch  # noqa: E402
from envdoctor.compat.dcn_tv import run_torchvision, torchvision_available  # noqa: E402


def per_call(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 5, 5, generator=g, requires_grad=True)
    off = (torch.randn(1, 18, 5, 5, generator=g) * 2).requires_grad_(True)
    msk = torch.rand(1, 9, 5, 5, generator=g, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, generator=g, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    one, pad = (1, 1), (1, 1)
    variants = {
        "torch backend direct (anchor)": lambda: DeformConvTorch.apply(
            x, off, msk, w, b, one, pad, one, 1, 1, 5, 5),
        "modulated_deform_conv2d auto": lambda: ops.modulated_deform_conv2d(
            x, off, msk, w, b, 1, 1, 1, 1, 1, backend="auto"),
        "modulated_deform_conv2d torch": lambda: ops.modulated_deform_conv2d(
            x, off, msk, w, b, 1, 1, 1, 1, 1, backend="torch"),
    }
    if torchvision_available()[0]:
        variants["torchvision backend direct (anchor 2)"] = lambda: run_torchvision(
            x, off, msk, w, b, one, pad, one, 1, 1)
        variants["modulated_deform_conv2d torchvision"] = lambda: ops.modulated_deform_conv2d(
            x, off, msk, w, b, 1, 1, 1, 1, 1, backend="torchvision")
    best = {k: float("inf") for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            best[k] = min(best[k], per_call(fn, args.reps))
    print("torch %s, 1 thread, %d calls x best of %d rounds" % (torch.__version__, args.reps,
                                                               args.rounds))
    anchor = best["torch backend direct (anchor)"]
    for k, t in best.items():
        ref = best.get("torchvision backend direct (anchor 2)", anchor) if "torchvision" in k else anchor
        print("%-42s %8.1f us  %5.2fx  (+%.1f us)" % (k, t, t / ref, t - ref))
    # The Python around the kernel alone (the part a GPU does not hide): the backends
    # replaced by a function returning at once, so only argument handling, validation and
    # the backend choice are timed -- steadier on a loaded machine than the difference of
    # two kernel timings above.
    saved = ops.DeformConvTorch, ops.run_torchvision

    class NoKernel:
        @staticmethod
        def apply(*a):
            return a[0]
    ops.DeformConvTorch, ops.run_torchvision = NoKernel, lambda *a: a[0]
    try:
        wrap = {}
        for name in ("auto", "torch", "torchvision"):
            def fn(n=name):
                return ops.modulated_deform_conv2d(x, off, msk, w, b, 1, 1, 1, 1, 1, backend=n)
            wrap[name] = min(per_call(fn, args.reps * 10) for _ in range(args.rounds))
        direct = min(per_call(lambda: NoKernel.apply(x, off, msk, w, b, one, pad, one, 1, 1, 5,
                                                     5), args.reps * 10)
                     for _ in range(args.rounds))
    finally:
        ops.DeformConvTorch, ops.run_torchvision = saved
    print("Python per call without the kernel: direct %.2f us" % direct)
    for name, t in wrap.items():
        print("  modulated_deform_conv2d backend=%-12s %6.2f us (+%.2f us)" % (name, t, t - direct))
    print("  auto's own cost over naming the backend: %+.2f us" % (wrap["auto"] - wrap["torch"]))

if __name__ == "__main__":
    main()
