"""roi_align_rotated_forward/backward of the mmcv._ext stand-in: mmcv's pinned values, a float64
loop reference (rotation, clockwise, aligned, adaptive grids, borders), gradcheck."""

import math

import pytest
import torch

from envdoctor.compat import ext

# mmcv tests/test_ops/test_roi_align_rotated.py: 2x2 bins, scale 1, sampling_ratio 2, aligned
PINNED = [
    ([[[[1., 2.], [3., 4.]]]], [[0., 0.5, 0.5, 1., 1., 0]], [[[[1.0, 1.25], [1.5, 1.75]]]],
     [[[[3.0625, 0.4375], [0.4375, 0.0625]]]]),
    ([[[[1., 2.], [3., 4.]]]], [[0., 0.5, 0.5, 1., 1., math.pi / 2]], [[[[1.5, 1], [1.75, 1.25]]]],
     [[[[3.0625, 0.4375], [0.4375, 0.0625]]]]),
    ([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.], [11., 12., 15., 16.]]]],
     [[0., 1.5, 1.5, 3., 3., math.pi / 2]], [[[[7.5625, 1.9375], [10.375, 4.75]]]],
     [[[[0.47265625, 0.42968750, 0.42968750, 0.04296875],
        [0.42968750, 0.39062500, 0.39062500, 0.03906250],
        [0.42968750, 0.39062500, 0.39062500, 0.03906250],
        [0.04296875, 0.03906250, 0.03906250, 0.00390625]]]]),
]


def run(x, rois, ph, pw, scale, sr, aligned, clockwise, grad=None):
    out = x.new_zeros((rois.shape[0], x.shape[1], ph, pw))
    kw = dict(pooled_height=ph, pooled_width=pw, spatial_scale=scale, sampling_ratio=sr,
              aligned=aligned, clockwise=clockwise)
    ext.roi_align_rotated_forward(x, rois, out, **kw)
    gi = None
    if grad is not None:
        gi = x.new_zeros(x.shape)
        ext.roi_align_rotated_backward(grad.contiguous(), rois, gi, **kw)  # mmcv's positions
    return out, gi


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmcv_pinned_values(dtype):
    for x, rois, want, want_grad in PINNED:
        x, rois = torch.tensor(x, dtype=dtype), torch.tensor(rois, dtype=dtype)
        out, gi = run(x, rois, 2, 2, 1.0, 2, True, False, torch.ones(1, 1, 2, 2, dtype=dtype))
        assert (out - torch.tensor(want, dtype=dtype)).abs().max().item() <= 1e-6
        assert (gi - torch.tensor(want_grad, dtype=dtype)).abs().max().item() <= 1e-6


def _f32(v):
    return float(torch.tensor(v, dtype=torch.float32))


def _bilinear(y, x, H, W):
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x1, (1 - ly) * lx), (y1, x0, ly * (1 - lx)),
            (y1, x1, ly * lx)]


def reference(x, rois, ph, pw, scale, sr, aligned, clockwise, grad):
    B, C, H, W = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    scale = _f32(scale)
    out = [[[[0.0] * pw for _ in range(ph)] for _ in range(C)] for _ in rois]
    gin = [[[[0.0] * W for _ in range(H)] for _ in range(C)] for _ in range(B)]
    for r, (b, cx, cy, w, h, th) in enumerate(rois):
        b = int(b)
        off = 0.5 if aligned else 0.0
        cx, cy, w, h = cx * scale - off, cy * scale - off, w * scale, h * scale
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        th = -th if clockwise else th
        gh = sr if sr > 0 else math.ceil(_f32(h / ph))
        gw = sr if sr > 0 else math.ceil(_f32(w / pw))
        bh, bw = h / ph, w / pw
        for c in range(C):
            for i in range(ph):
                for j in range(pw):
                    samples = []
                    for iy in range(gh):
                        yy = -h / 2 + i * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = -w / 2 + j * bw + (ix + 0.5) * bw / gw
                            samples.append(_bilinear(yy * math.cos(th) - xx * math.sin(th) + cy,
                                                     yy * math.sin(th) + xx * math.cos(th) + cx,
                                                     H, W))
                    out[r][c][i][j] = sum(wt * x[b][c][a][e] for s in samples for a, e, wt in s) \
                        / max(gh * gw, 1)
                    for s in samples:
                        for a, e, wt in s:
                            gin[b][c][a][e] += grad[r][c][i][j] * wt / (gh * gw)
    return out, gin


@pytest.mark.parametrize("case", [(2, 3, 0.5, 0, True, False), (3, 2, 1.0, 2, False, True),
                                  (2, 2, 0.25, 1, True, True)])
def test_equals_the_float64_reference(case):
    ph, pw, scale, sr, aligned, clockwise = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    R = 10
    ctr = torch.rand(R, 2, generator=g, dtype=torch.float64) * 40 - 5
    wh = torch.rand(R, 2, generator=g, dtype=torch.float64) * 20
    th = (torch.rand(R, 1, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    rois = torch.cat([torch.randint(0, 2, (R, 1), generator=g).double(), ctr, wh, th], 1)
    rois[0, 3:5] = 0.0  # degenerate
    grad = torch.randn(R, 3, ph, pw, generator=g, dtype=torch.float64)
    out, gi = run(x, rois, ph, pw, scale, sr, aligned, clockwise, grad)
    r_out, r_gi = reference(x.tolist(), rois.tolist(), ph, pw, scale, sr, aligned, clockwise,
                            grad.tolist())
    assert (out - torch.tensor(r_out, dtype=torch.float64)).abs().max().item() <= 1e-12
    assert (gi - torch.tensor(r_gi, dtype=torch.float64)).abs().max().item() <= 1e-12


def test_gradcheck_and_errors():
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 3.1, 2.7, 4.1, 3.2, 0.4], [0, 2.2, 3.9, 2.3, 4.9, -1.1]],
                        dtype=torch.float64)

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.shape = x.shape
            return run(x.detach(), rois, 2, 3, 1.0, 2, True, False)[0]

        @staticmethod
        def backward(ctx, grad):
            gi = grad.new_zeros(ctx.shape)
            ext.roi_align_rotated_backward(grad.contiguous(), rois, gi, pooled_height=2,
                                           pooled_width=3, spatial_scale=1.0, sampling_ratio=2,
                                           aligned=True, clockwise=False)
            return gi

    assert torch.autograd.gradcheck(F.apply, (x,), eps=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="ROIAlignRotated do not have non-negative size"):
        run(x.detach(), torch.tensor([[0, 1.0, 1.0, -2.0, 1.0, 0.0]], dtype=torch.float64), 2, 2,
            1.0, 0, True, False)
