"""roi_align_forward/backward of the mmcv._ext stand-in: mmcv's pinned values, a float64 loop
reference (avg and max, aligned and not, adaptive grids, RoIs over the borders), gradcheck,
torchvision's fast path against the pure path, the in-place conventions."""

import pytest
import torch

from envdoctor.compat import ext
from envdoctor.compat import roi_align as RA
from envdoctor.compat.errors import CompatUnsupportedError
from ref_roi_align import roi_align_ref

TV = RA._tv_roi_align(torch.zeros(1, dtype=torch.float32),
                      RA._Rois(torch.zeros((1, 5)), 1, 1, 1.0, 1, True), 1) is not None


@pytest.fixture(params=["torch"] + (["torchvision"] if TV else []))
def backend(request, monkeypatch):
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", request.param)
    return request.param


def run(x, rois, ph, pw, scale, sr, mode, aligned, grad=None):
    """mmcv's RoIAlignFunction protocol on the stand-in: (out, argmax_y, argmax_x, grad_input)."""
    shape = (rois.shape[0], x.shape[1], ph, pw)
    out = x.new_zeros(shape)
    ay = x.new_zeros(shape if mode == 0 else (0,))
    ax = x.new_zeros(shape if mode == 0 else (0,))
    kw = dict(aligned_height=ph, aligned_width=pw, spatial_scale=scale, sampling_ratio=sr,
              pool_mode=mode, aligned=aligned)
    ext.roi_align_forward(x, rois, out, ay, ax, **kw)
    gi = None
    if grad is not None:
        gi = x.new_zeros(x.shape)
        ext.roi_align_backward(grad, rois, ay, ax, gi, **kw)
    return out, ay, ax, gi


# mmcv tests/test_ops/test_roi_align.py: 2x2 bins, scale 1, sampling_ratio 2, avg, aligned
PINNED = [
    ([[[[1., 2.], [3., 4.]]]], [[0., 0., 0., 1., 1.]],
     [[[[1.0, 1.25], [1.5, 1.75]]]], [[[[3.0625, 0.4375], [0.4375, 0.0625]]]]),
    ([[[[1., 2.], [3., 4.]], [[4., 3.], [2., 1.]]]], [[0., 0., 0., 1., 1.]],
     [[[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]]],
     [[[[3.0625, 0.4375], [0.4375, 0.0625]], [[3.0625, 0.4375], [0.4375, 0.0625]]]]),
    ([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.], [11., 12., 15., 16.]]]],
     [[0., 0., 0., 3., 3.]], [[[[1.9375, 4.75], [7.5625, 10.375]]]],
     [[[[0.47265625, 0.42968750, 0.42968750, 0.04296875],
        [0.42968750, 0.39062500, 0.39062500, 0.03906250],
        [0.42968750, 0.39062500, 0.39062500, 0.03906250],
        [0.04296875, 0.03906250, 0.03906250, 0.00390625]]]]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmcv_pinned_values(backend, dtype):
    for x, rois, want, want_grad in PINNED:
        x, rois = torch.tensor(x, dtype=dtype), torch.tensor(rois, dtype=dtype)
        ones = torch.ones(rois.shape[0], x.shape[1], 2, 2, dtype=dtype)
        out, _, _, gi = run(x, rois, 2, 2, 1.0, 2, 1, True, ones)
        assert torch.equal(out, torch.tensor(want, dtype=dtype))
        assert torch.equal(gi, torch.tensor(want_grad, dtype=dtype))


def _case(seed, B=2, C=3, H=7, W=9, R=12):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    xy = torch.rand(R, 2, generator=g, dtype=torch.float64) * torch.tensor([W + 4.0, H + 4.0]) * 2 - 4
    wh = torch.rand(R, 2, generator=g, dtype=torch.float64) * 12
    b = torch.randint(0, B, (R, 1), generator=g).double()
    rois = torch.cat([b, xy, xy + wh], 1)
    rois[0, 1:] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # a degenerate RoI
    rois[1, 1:] = torch.tensor([-3.0, -2.0, 40.0, 30.0])  # over every border
    return x, rois


CASES = [  # (ph, pw, scale, sampling_ratio, mode, aligned)
    (2, 3, 0.5, 0, 1, True), (3, 2, 0.5, 2, 1, False), (2, 2, 1.0, 0, 0, True),
    (3, 3, 0.5, 1, 0, False), (1, 2, 1 / 3, 0, 1, False), (2, 2, 0.25, 3, 0, True),
]


@pytest.mark.parametrize("case", CASES)
def test_equals_the_float64_reference(backend, case):
    ph, pw, scale, sr, mode, aligned = case
    for seed in range(2):
        x, rois = _case(seed)
        grad = torch.randn(rois.shape[0], x.shape[1], ph, pw, dtype=torch.float64)
        out, ay, ax, gi = run(x, rois, ph, pw, scale, sr, mode, aligned, grad)
        r_out, r_ay, r_ax, r_gi = roi_align_ref(x.tolist(), rois.tolist(), ph, pw, scale, sr,
                                                mode, aligned, grad.tolist())
        assert (out - torch.tensor(r_out, dtype=torch.float64)).abs().max().item() <= 1e-12
        assert (gi - torch.tensor(r_gi, dtype=torch.float64)).abs().max().item() <= 1e-12
        if mode == 0:
            assert torch.equal(ay, torch.tensor(r_ay, dtype=torch.float64))
            assert torch.equal(ax, torch.tensor(r_ax, dtype=torch.float64))


def test_torchvision_fast_path_equals_the_pure_path_float32(monkeypatch):
    if not TV:
        pytest.skip("torchvision's roi_align not loadable")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 25, 34, generator=g)
    xy = torch.rand(200, 2, generator=g) * 300
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=g).float(), xy,
                      xy + torch.rand(200, 2, generator=g) * 200], 1)
    grad = torch.randn(200, 16, 7, 7, generator=g)
    res = {}
    for name in ("torchvision", "torch"):
        monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", name)
        res[name] = run(x, rois, 7, 7, 1 / 16, 0, 1, True, grad)
    assert torch.equal(res["torch"][0], res["torchvision"][0])  # same operations, same order
    assert (res["torch"][3] - res["torchvision"][3]).abs().max().item() <= 1e-5


def test_float64_fast_path_gate_uses_mmcv_ceilf():
    """A double RoI size whose quotient lies within float rounding above an integer."""
    rh = 2.0 + 1e-12  # ceil -> 3, ceilf(float32(2.000000000001)) -> 2
    rois = torch.tensor([[0.0, 0.0, 0.0, rh, rh]], dtype=torch.float64)
    geo = RA._Rois(rois, 1, 1, 1.0, 0, True)
    assert geo.gh.tolist() == [2] and geo.gw.tolist() == [2]
    assert RA._tv_roi_align(torch.zeros(1, dtype=torch.float64), geo, 0) is None
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    out = run(x, rois, 1, 1, 1.0, 0, 1, True)[0]
    ref = roi_align_ref(x.tolist(), rois.tolist(), 1, 1, 1.0, 0, 1, True)[0]
    assert (out - torch.tensor(ref, dtype=torch.float64)).abs().max().item() <= 1e-14


@pytest.mark.parametrize("mode", [0, 1])
def test_gradcheck(mode):
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.1, 5.2], [0, 1.1, 0.2, 6.3, 3.9]], dtype=torch.float64)

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out, ay, ax, _ = run(x.detach(), rois, 2, 3, 1.0, 2, mode, True)
            ctx.save_for_backward(ay, ax)
            ctx.shape = x.shape
            return out

        @staticmethod
        def backward(ctx, grad):
            ay, ax = ctx.saved_tensors
            gi = grad.new_zeros(ctx.shape)
            ext.roi_align_backward(grad.contiguous(), rois, ay, ax, gi, aligned_height=2,
                                   aligned_width=3, spatial_scale=1.0, sampling_ratio=2,
                                   pool_mode=mode, aligned=True)
            return gi

    assert torch.autograd.gradcheck(F.apply, (x,), eps=1e-6, atol=1e-6)


def test_in_place_conventions_and_errors():
    x, rois = _case(0)
    x = x.float()
    rois = rois.float()
    _, ay, ax, _ = run(x, rois, 2, 2, 1.0, 0, 0, True)
    assert (ay[0] == -1).all() and (ay[1:] != 0).any()  # argmax written; -1 for the empty RoI
    gi = torch.ones_like(x)
    ext.roi_align_backward(torch.ones(rois.shape[0], x.shape[1], 2, 2), rois, x.new_zeros(0),
                           x.new_zeros(0), gi, aligned_height=2, aligned_width=2,
                           spatial_scale=1.0, sampling_ratio=0, pool_mode=1, aligned=True)
    acc = torch.zeros_like(x)
    ext.roi_align_backward(torch.ones(rois.shape[0], x.shape[1], 2, 2), rois, x.new_zeros(0),
                           x.new_zeros(0), acc, aligned_height=2, aligned_width=2,
                           spatial_scale=1.0, sampling_ratio=0, pool_mode=1, aligned=True)
    assert torch.allclose(gi, acc + 1)  # accumulated, not overwritten
    bad = torch.tensor([[0.0, 5.0, 5.0, 2.0, 2.0]])
    with pytest.raises(RuntimeError, match="ROIs in ROIAlign cannot have non-negative size"):
        run(x, bad, 2, 2, 1.0, 0, 1, True)
    # float16 is served (tests/compat/test_half_kernels.py); no mmcv kernel takes bfloat16
    with pytest.raises(CompatUnsupportedError, match="bfloat16"):
        run(x.bfloat16(), rois.bfloat16(), 2, 2, 1.0, 0, 1, True)
