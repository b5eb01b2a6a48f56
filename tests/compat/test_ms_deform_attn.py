"""ms_deform_attn_forward/backward of the mmcv._ext stand-in: a float64 loop reference
(forward and analytic gradients), gradcheck, grid_sample agreement, the im2col_step check."""

import math

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext

SHAPES = [(4, 5), (2, 3), (1, 1)]


def make(seed, bs=2, nq=5, heads=2, C=3, points=2, dyadic=False):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(SHAPES)
    start = torch.cat([torch.zeros(1, dtype=torch.int64), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(bs, keys, heads, C, generator=g, dtype=torch.float64)
    loc = torch.rand(bs, nq, heads, len(SHAPES), points, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    if dyadic:  # samples exactly on -1, 0 and the last row/column
        loc = torch.round(loc * 8) / 8
    attn = torch.rand(bs, nq, heads, len(SHAPES), points, generator=g, dtype=torch.float64)
    return value, shapes, start, loc, attn


def reference(value, shapes, start, loc, attn, grad):
    """Loops over Python floats from the kernel's semantics; returns out and the 3 gradients."""
    bs, keys, heads, C = value.shape
    _, nq, _, nl, npt, _ = loc.shape
    V, L, A, G = value.tolist(), loc.tolist(), attn.tolist(), grad.reshape(bs, nq, heads, C).tolist()
    out = [[[[0.0] * C for _ in range(heads)] for _ in range(nq)] for _ in range(bs)]
    gv = [[[[0.0] * C for _ in range(heads)] for _ in range(keys)] for _ in range(bs)]
    gl = [[[[[[0.0, 0.0] for _ in range(npt)] for _ in range(nl)] for _ in range(heads)]
           for _ in range(nq)] for _ in range(bs)]
    ga = [[[[[0.0] * npt for _ in range(nl)] for _ in range(heads)] for _ in range(nq)] for _ in range(bs)]
    for b in range(bs):
        for q in range(nq):
            for m in range(heads):
                for lv in range(nl):
                    H, W = int(shapes[lv, 0]), int(shapes[lv, 1])
                    s0 = int(start[lv])
                    for p in range(npt):
                        lx, ly = L[b][q][m][lv][p]
                        y, x = ly * H - 0.5, lx * W - 0.5
                        if not (-1 < y < H and -1 < x < W):
                            continue
                        y0, x0 = math.floor(y), math.floor(x)
                        fy, fx = y - y0, x - x0
                        a = A[b][q][m][lv][p]

                        def v(yy, xx, c, H=H, W=W, s0=s0, b=b, m=m):
                            if 0 <= yy < H and 0 <= xx < W:
                                return V[b][s0 + yy * W + xx][m][c]
                            return 0.0
                        corners = ((y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
                                   (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx))
                        for c in range(C):
                            v1, v2, v3, v4 = (v(yy, xx, c) for yy, xx, _ in corners)
                            val = sum(w * vv for (_, _, w), vv in zip(corners, (v1, v2, v3, v4)))
                            out[b][q][m][c] += a * val
                            t = G[b][q][m][c]
                            ga[b][q][m][lv][p] += t * val
                            gl[b][q][m][lv][p][0] += W * a * t * ((1 - fy) * (v2 - v1) + fy * (v4 - v3))
                            gl[b][q][m][lv][p][1] += H * a * t * ((1 - fx) * (v3 - v1) + fx * (v4 - v2))
                            for yy, xx, w in corners:
                                if 0 <= yy < H and 0 <= xx < W:
                                    gv[b][s0 + yy * W + xx][m][c] += w * a * t
    f64 = dict(dtype=torch.float64)
    return (torch.tensor(out, **f64).reshape(bs, nq, heads * C), torch.tensor(gv, **f64),
            torch.tensor(gl, **f64), torch.tensor(ga, **f64))


def run(value, shapes, start, loc, attn, grad, step=64):
    out = ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=step)
    gv, gl, ga = torch.zeros_like(value), torch.zeros_like(loc), torch.zeros_like(attn)
    ext.ms_deform_attn_backward(value, shapes, start, loc, attn, grad.contiguous(), gv, gl, ga,
                                im2col_step=step)
    return out, gv, gl, ga


@pytest.mark.parametrize("dyadic", [False, True])
def test_equals_the_float64_loop_reference(dyadic):
    for seed in range(2):
        value, shapes, start, loc, attn = make(seed, dyadic=dyadic)
        grad = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3],
                           dtype=torch.float64)
        got = run(value, shapes, start, loc, attn, grad)
        want = reference(value, shapes, start, loc, attn, grad)
        for name, a, b in zip(("out", "value", "loc", "attn"), got, want):
            assert (a - b).abs().max().item() <= 1e-12, name


def test_forward_equals_grid_sample_away_from_the_borders():
    """The same sampling as grid_sample(zeros, align_corners=False) at 2*loc - 1."""
    value, shapes, start, loc, attn = make(3, nq=7)
    out = ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=64)
    bs, _, heads, C = value.shape
    acc = 0
    for lv, (H, W) in enumerate(shapes.tolist()):
        s0 = int(start[lv])
        v = value[:, s0:s0 + H * W].permute(0, 2, 3, 1).reshape(bs * heads, C, H, W)
        grid = (2 * loc[:, :, :, lv] - 1).permute(0, 2, 1, 3, 4).reshape(bs * heads, -1, loc.shape[4], 2)
        smp = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        w = attn[:, :, :, lv].permute(0, 2, 1, 3).reshape(bs * heads, 1, -1, loc.shape[4])
        acc = acc + (smp * w).sum(-1)
    want = acc.view(bs, heads, C, -1).permute(0, 3, 1, 2).reshape(bs, -1, heads * C)
    assert (out - want).abs().max().item() <= 1e-12


def test_gradcheck():
    value, shapes, start, loc, attn = make(4, bs=1, nq=3)
    value.requires_grad_(True)
    loc.requires_grad_(True)
    attn.requires_grad_(True)

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value, loc, attn):
            ctx.save_for_backward(value, loc, attn)
            return ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=64)

        @staticmethod
        def backward(ctx, grad):
            value, loc, attn = ctx.saved_tensors
            gv, gl, ga = torch.zeros_like(value), torch.zeros_like(loc), torch.zeros_like(attn)
            ext.ms_deform_attn_backward(value, shapes, start, loc, attn, grad.contiguous(), gv, gl,
                                        ga, im2col_step=64)
            return gv, gl, ga

    assert torch.autograd.gradcheck(Fn.apply, (value, loc, attn), eps=1e-6, atol=1e-6)


def test_im2col_step_and_dtype_checks():
    value, shapes, start, loc, attn = make(0, bs=3)
    with pytest.raises(RuntimeError, match=r"batch\(3\) must divide im2col_step\(2\)"):
        ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=2)
    out = ext.ms_deform_attn_forward(value.float(), shapes, start, loc.float(), attn.float(),
                                     im2col_step=3)
    ref = ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=1)
    assert out.dtype == torch.float32 and (out.double() - ref).abs().max().item() <= 1e-5
