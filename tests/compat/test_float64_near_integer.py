"""Where the compat layer deliberately differs from mmcv's kernels: float64 just below integers.

mmcv's modulated CPU kernel and all its CUDA kernels take the corner cell with ``floorf``,
which rounds a double coordinate to float32 first.  A float64 sample coordinate lying within
half a float32 ulp below an integer ``n`` therefore uses cell ``n`` (with a weight of
``1 + 1e-12``-ish, a tiny extrapolation) instead of cell ``n - 1``; for ``n == H`` (or ``W``)
the kernel reads the next channel's first row.  envdoctor uses the exact ``floor``, like
torchvision and mmcv's own DCNv1 CPU kernel.  These tests show the case: our result equals the
exact float64 reference and torchvision's kernel, while mmcv's rule (replayed from its source
by ``reference(..., floor="floorf")``; no compiled mmcv exists here) gives another forward
value just below the last row/column and another offset gradient at every such sample.
"""

import struct

import pytest
import torch

from envdoctor.compat import ops
from reference import reference

TV_OK = ops.torchvision_available()[0]


def _f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def _case(eps):
    gen = torch.Generator().manual_seed(7)
    B, C, H, W, Cout, k = 1, 3, 4, 5, 2, 3
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    # integer offsets minus eps: every sample sits just below an integer coordinate
    off = torch.randint(-2, 3, (B, 2 * k * k, H, W), generator=gen).double() - eps
    mask = torch.rand(B, k * k, H, W, generator=gen, dtype=torch.float64)
    weight = torch.randn(Cout, C, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(Cout, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(B, Cout, H, W, generator=gen, dtype=torch.float64)
    return x, off, mask, weight, bias, grad_out


def _ours(x, off, mask, weight, bias, grad_out, backend):
    ts = [t.clone().requires_grad_(True) for t in (x, off, mask, weight, bias)]
    out = ops.modulated_deform_conv2d(*ts[:4], ts[4], 1, 1, 1, 1, 1, backend=backend)
    out.backward(grad_out)
    names = ("input", "offset", "mask", "weight", "bias")
    return dict(out=out.detach(), **{n: t.grad for n, t in zip(names, ts)})


def _ref(x, off, mask, weight, bias, grad_out, floor):
    r = reference(x.tolist(), off.tolist(), weight.tolist(), mask.tolist(), bias.tolist(),
                  padding=(1, 1), grad_out=grad_out.tolist(), floor=floor)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in r.items()}


def _n_floorf_differs(off, H, W, k=3):
    """Samples whose floorf(coordinate) != floor(coordinate), inside the open window."""
    n = 0
    o = off[0]
    for t in range(k * k):
        i, j = divmod(t, k)
        for oh in range(o.shape[1]):
            for ow in range(o.shape[2]):
                for base, d, size in ((oh - 1 + i, o[2 * t, oh, ow].item(), H),
                                      (ow - 1 + j, o[2 * t + 1, oh, ow].item(), W)):
                    c = base + d
                    if -1 < c < size and int(_f32(c) // 1) != int(c // 1):
                        n += 1
    return n


@pytest.mark.parametrize("backend", ["torch"] + (["torchvision"] if TV_OK else []))
def test_float64_just_below_integers_we_use_the_exact_floor(backend):
    case = _case(1e-12)
    x, off = case[0], case[1]
    assert _n_floorf_differs(off, x.shape[2], x.shape[3]) > 50  # the data exercises the case
    ours = _ours(*case, backend=backend)
    exact = _ref(*case, floor="exact")
    for name, ref in exact.items():
        assert (ours[name] - ref).abs().max().item() <= 1e-10, name

    mmcv_rule = _ref(*case, floor="floorf")
    # mmcv's rule, just below the last row/column, reads the next channel's first row: the
    # forward differs by far more than rounding (ours is the bilinear value of the image)
    rel = (mmcv_rule["out"] - exact["out"]).abs().max() / exact["out"].abs().max()
    assert rel.item() > 1e-2
    # and at every sample just below an integer it differentiates in the cell above: the
    # offset gradient differs by O(1)
    assert (mmcv_rule["offset"] - exact["offset"]).abs().max().item() > 1e-1


@pytest.mark.skipif(not TV_OK, reason="torchvision's compiled deform_conv2d not loadable")
def test_float64_just_below_integers_equals_torchvision_kernel():
    import torchvision

    x, off, mask, weight, bias, _ = _case(1e-12)
    ours = ops.modulated_deform_conv2d(x, off, mask, weight, bias, 1, 1, 1, 1, 1,
                                       backend="torch")
    tv = torchvision.ops.deform_conv2d(x, off, weight, bias, padding=(1, 1), mask=mask)
    assert (ours - tv).abs().max().item() <= 1e-13


def test_dyadic_offsets_never_hit_the_floorf_case():
    """Why the other float64 tests use multiples of 2^-10: there both rules are the same."""
    x, off, mask, weight, bias, grad_out = _case(0.0)
    off = off + torch.round(torch.randn(off.shape, dtype=torch.float64) * 1024) / 1024
    exact = _ref(x, off, mask, weight, bias, grad_out, floor="exact")
    floorf = _ref(x, off, mask, weight, bias, grad_out, floor="floorf")
    for name in floorf:
        assert (exact[name] - floorf[name]).abs().max().item() == 0.0, name
