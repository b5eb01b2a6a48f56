"""Speed and memory of envdoctor's compat deformable convolution vs torchvision's native kernel.

Usage:  PYTHONPATH=. python bench/bench_compat.py [--reps 5] [--no-scaling] [--device cpu]

Anchor: ``torchvision.ops.deform_conv2d`` (its compiled kernel, raw, no offset-gradient fix)
measured in the same run.  Shape: the E2FGVI-HQ alignment layer
(B=1, C=256, 60x108, Cout=128, 3x3, padding 1, deform_groups 16, fp32, with mask and bias;
offsets 10*tanh(noise) + a flow-like field, as in SecondOrderDeformableAlignment).

Variants: ``torch`` (pure-PyTorch backend), ``torchvision`` (compat backend = native kernel +
offset-gradient gate), ``auto``.  Time = best of --reps runs after one warm-up, variants
interleaved (robust on a shared machine).  Memory = peak growth of
*anonymous* resident memory (statm resident - shared, sampled every ~0.5 ms by a thread) while
running one forward (or forward+backward) in a fresh subprocess per variant; inputs built and
a small warm-up problem run first; glibc's mmap threshold pinned with MALLOC_MMAP_THRESHOLD_
so that freed tensors leave RSS.  File-backed pages (library code) are excluded: their RSS
depends on page-cache state, not on the algorithm.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from envdoctor.compat import ops  # noqa: E402


def make_inputs(B=1, C=256, H=60, W=108, Cout=128, dg=16, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g)
    flow = torch.randn(B, 2, H, W, generator=g) * 4
    off = 10 * torch.tanh(torch.randn(B, dg * 18, H, W, generator=g)) + \
        flow.flip(1).repeat(1, dg * 9, 1, 1)
    mask = torch.sigmoid(torch.randn(B, dg * 9, H, W, generator=g))
    w = torch.randn(Cout, C, 3, 3, generator=g) * 0.02
    b = torch.randn(Cout, generator=g)
    return [t.to(device) for t in (x, off, mask, w, b)] + [dg]


def run(variant, inputs, backward):
    x, off, mask, w, b, dg = inputs
    if backward:
        leaves = [t.detach().requires_grad_() for t in (x, off, mask, w, b)]
    else:
        leaves = [x, off, mask, w, b]
    ctx = torch.enable_grad() if backward else torch.no_grad()
    with ctx:
        if variant == "tv-native":
            import torchvision

            out = torchvision.ops.deform_conv2d(leaves[0], leaves[1], leaves[3], leaves[4],
                                                padding=(1, 1), mask=leaves[2])
        else:
            out = ops.modulated_deform_conv2d(leaves[0], leaves[1], leaves[2], leaves[3],
                                              leaves[4], 1, 1, 1, 1, dg, backend=variant)
        if backward:
            out.backward(torch.ones_like(out))
    if x.is_cuda:
        torch.cuda.synchronize()
    return out


def timeit(variant, inputs, backward, reps):
    return timeall([variant], inputs, backward, reps)[variant]


def timeall(variants, inputs, backward, reps):
    """Best of ``reps`` per variant, variants interleaved (the machine may be shared)."""
    for v in variants:
        run(v, inputs, backward)  # warm-up
    ts = {v: [] for v in variants}
    for _ in range(reps):
        for v in variants:
            t0 = time.perf_counter()
            run(v, inputs, backward)
            ts[v].append(time.perf_counter() - t0)
    return {v: min(t) for v, t in ts.items()}


def _anon_bytes():
    """Resident anonymous memory (resident minus file-backed shared pages)."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler(threading.Thread):
    """Samples anonymous RSS every ~0.5 ms (torch ops release the GIL)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = _anon_bytes()
        self.stop = False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, _anon_bytes())
            time.sleep(0.0005)


def memory_child(variant, backward, shape):
    inputs = make_inputs(**shape)
    if variant in ("torchvision", "tv-native", "auto"):
        ops.torchvision_available()
        ops._tv_supports(inputs[0].device, inputs[0].dtype)
    # one-time initialisation (kernels, BLAS/thread buffers) happens on a small problem first
    small = dict(shape, H=8, W=8)
    run(variant, make_inputs(**small), backward)
    base = _anon_bytes()
    sampler = _PeakSampler()
    sampler.start()
    run(variant, inputs, backward)
    sampler.stop = True
    sampler.join()
    peak = max(sampler.peak, _anon_bytes())
    print(json.dumps({"peak_delta": peak - base}))


def memory(variant, backward, shape):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", variant,
           "--backward" if backward else "--forward", "--shape", json.dumps(shape)]
    # a fixed mmap threshold makes glibc return freed large blocks, so RSS follows live tensors
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         universal_newlines=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_delta"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads for timing (default: torch's default)")
    ap.add_argument("--memory-child")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--forward", action="store_true")
    ap.add_argument("--shape", default="{}")
    a = ap.parse_args()
    if a.memory_child:
        return memory_child(a.memory_child, a.backward, json.loads(a.shape))

    if a.threads:
        torch.set_num_threads(a.threads)
    print("command: PYTHONPATH=. %s %s" % (os.path.basename(sys.executable), " ".join(sys.argv)))
    print("torch %s, threads %d, device %s, cpus %d, load average at start %.2f (a shared machine "
          "slows multi-threaded runs unevenly)" % (torch.__version__, torch.get_num_threads(),
                                                   a.device, os.cpu_count(), os.getloadavg()[0]))
    tv_ok, reason = ops.torchvision_available()
    if not tv_ok:
        print("torchvision's compiled kernel is not available (%s): no anchor, nothing to compare"
              % reason)
        return 1
    import torchvision

    print("torchvision %s (anchor: torchvision.ops.deform_conv2d, raw native kernel)"
          % torchvision.__version__)
    shape = dict(B=1, C=256, H=60, W=108, Cout=128, dg=16, device=a.device)
    inputs = make_inputs(**shape)
    variants = ["tv-native", "torchvision", "torch", "auto"]
    res = {v: {} for v in variants}
    for key, bwd in (("fwd", False), ("fwdbwd", True)):
        for v, t in timeall(variants, inputs, bwd, a.reps).items():
            res[v][key] = t
    for v in variants:
        if a.device == "cpu":
            mshape = dict(shape)
            res[v]["mem_fwd"] = memory(v, False, mshape)
            res[v]["mem_fwdbwd"] = memory(v, True, mshape)
    anchor = res["tv-native"]
    print()
    print("E2FGVI-HQ layer: B=1 C=256 60x108 Cout=128 3x3 pad1 dg16 fp32, best of %d (interleaved)" % a.reps)
    hdr = "%-12s %9s %9s %12s %12s %9s %9s" % ("variant", "fwd s", "fwd+bwd s", "fwd ratio",
                                                 "fwd+bwd ratio", "mem fwd", "mem f+b")
    print(hdr)
    for v in variants:
        r = res[v]
        mf = r.get("mem_fwd", float("nan")) / 2 ** 20
        mb = r.get("mem_fwdbwd", float("nan")) / 2 ** 20
        print("%-12s %9.3f %9.3f %11.2fx %12.2fx %7.0fMB %7.0fMB" % (
            v, r["fwd"], r["fwdbwd"], r["fwd"] / anchor["fwd"], r["fwdbwd"] / anchor["fwdbwd"],
            mf, mb))
    t = res["torch"]
    print()
    print("pure-PyTorch vs native: forward %.2fx (goal <= 1.5x), forward+backward %.2fx "
          "(goal <= 1.0x)" % (t["fwd"] / anchor["fwd"], t["fwdbwd"] / anchor["fwdbwd"]))
    if "mem_fwdbwd" in t:
        print("pure-PyTorch peak memory vs native: forward %.2fx, forward+backward %.2fx "
              "(goal <= 1.5x)" % (t["mem_fwd"] / anchor["mem_fwd"],
                                   t["mem_fwdbwd"] / anchor["mem_fwdbwd"]))
    for k, label in (("fwd", "forward"), ("fwdbwd", "forward+backward")):
        best = min(res["torch"][k], res["torchvision"][k])
        print("auto %s: %.3fs vs best exact backend %.3fs (%.2fx)"
              % (label, res["auto"][k], best, res["auto"][k] / best))

    print("load average after the main table: %.2f" % os.getloadavg()[0])
    if a.no_scaling:
        return 0
    print()
    print("scaling (pure-PyTorch backend vs native kernel; time in s, best of %d)"
          % max(2, a.reps // 2))
    print("%-14s %9s %9s %7s %11s %11s %7s" % ("B x H x W", "torch fwd", "tv fwd", "ratio",
                                                "torch f+b", "tv f+b", "ratio"))
    for B, H, W in ((1, 30, 54), (1, 60, 108), (1, 120, 216), (2, 60, 108), (4, 60, 108)):
        inp = make_inputs(B=B, H=H, W=W, device=a.device)
        reps = max(2, a.reps // 2)
        tf = timeit("torch", inp, False, reps)
        vf = timeit("tv-native", inp, False, reps)
        tb = timeit("torch", inp, True, reps)
        vb = timeit("tv-native", inp, True, reps)
        print("%-14s %9.3f %9.3f %6.2fx %11.3f %11.3f %6.2fx" % (
            "%dx%dx%d" % (B, H, W), tf, vf, tf / vf, tb, vb, tb / vb))
    print("load average at the end: %.2f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
