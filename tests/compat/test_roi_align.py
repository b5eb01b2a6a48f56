"""roi_align_forward/backward of the mmcv._ext stand-in: mmcv's pinned values, a float64 loop
reference (avg and max, aligned and not, adaptive grids, RoIs over the borders), gradcheck,
torchvision's fast path against the pure path, the in-place conventions."""

import pytest
import torch

from envdoctor.compat import ext
from envdoctor.compat import roi_align as RA
from envdoctor.compat import roi_align_torch as RT
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


# --- the grouped pure path (envdoctor/compat/roi_align_torch.py): bit-equal, not merely close -------------

def _ref(x, rois, ph, pw, scale, sr, mode, aligned, grad):
    r = roi_align_ref(x.tolist(), rois.tolist(), ph, pw, scale, sr, mode, aligned, grad.tolist())
    return [torch.tensor(t, dtype=torch.float64) for t in r]


def _many_grids(aligned, B=2, C=4, H=9, W=11):
    """40 RoIs whose adaptive 2x2-bin grids differ (0..6 samples per axis, non-square), over every
    border, two with samples exactly on -1 and on H / W (both in, the kernels' closed window)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    rows = []
    for i in range(40):
        w = 2.0 * (i % 7) + 0.25 * (i % 3)  # bin = w / 2 -> grid ceil(bin) = 0..6
        h = 2.0 * ((i // 7) % 7) + 0.5 * (i % 2)
        x1 = float(torch.rand(1, generator=g, dtype=torch.float64)) * (W + 8) - 6
        y1 = float(torch.rand(1, generator=g, dtype=torch.float64)) * (H + 8) - 6
        rows.append([i % B, x1, y1, x1 + w, y1 + h])
    off = 0.5 if aligned else 0.0  # 2-unit RoIs: one sample per bin at start + 0.5 + bin
    rows.append([0, -1.0 - 0.5 + off, -1.0 - 0.5 + off, 1.0 - 0.5 + off, 1.0 - 0.5 + off])
    rows.append([1, W - 1.5 + off, H - 1.5 + off, W + 0.5 + off, H + 0.5 + off])
    return x, torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("mode", [0, 1])
def test_grouped_grids_bit_equal_to_the_reference(monkeypatch, mode, aligned):
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    x, rois = _many_grids(aligned)
    H, W = x.shape[2:]
    geo = RA._Rois(rois, 2, 2, 1.0, 0, aligned)
    assert len(set(zip(geo.gh.tolist(), geo.gw.tolist()))) >= 15  # many groups, non-square ones
    _, _, ys, xs = geo.samples()
    assert (ys == -1).any() and (ys == H).any() and (xs == -1).any() and (xs == W).any()
    assert ((ys < -1) | (ys > H)).any() and ((xs < -1) | (xs > W)).any()
    grad = torch.randn(rois.shape[0], x.shape[1], 2, 2, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(6))
    want = _ref(x, rois, 2, 2, 1.0, 0, mode, aligned, grad)
    for chunk in (RT._CHUNK, 1):  # the default chunks; one RoI and one sample per block
        monkeypatch.setattr(RT, "_CHUNK", chunk)
        got = run(x, rois, 2, 2, 1.0, 0, mode, aligned, grad)
        assert torch.equal(got[0], want[0]), chunk
        assert torch.equal(got[3], want[3]), chunk
        if mode == 0:
            assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2]), chunk


@pytest.mark.parametrize("chunk", [None, 1])
def test_max_mode_ties_nan_and_the_start_value(monkeypatch, chunk):
    """Ties keep the first sample (the kernels' strict '>'), NaN samples are skipped, a bin below the
    CPU kernel's start value -10000 gives -10000 and argmax -1, a RoI without samples too."""
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    if chunk:
        monkeypatch.setattr(RT, "_CHUNK", chunk)
    x = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x[0, 0] = 2.5  # constant, and dyadic sample coordinates: every sample of a bin is exactly 2.5
    x[0, 1] = -20000.0
    x[0, 2, 2, 3] = float("nan")
    rois = torch.tensor([[0, 0.5, 0.5, 5.0, 4.5], [0, 1.0, 1.5, 7.0, 5.5], [0, 2.0, 2.0, 2.0, 2.0]],
                        dtype=torch.float64)
    grad = torch.randn(3, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    out, ay, ax, gi = run(x, rois, 2, 2, 1.0, 0, 0, True, grad)
    geo = RA._Rois(rois, 2, 2, 1.0, 0, True)
    assert geo.gh.tolist() == [2, 2, 0] and geo.gw.tolist() == [3, 3, 0]
    bins, _, ys, xs = geo.samples()
    first = torch.ones_like(bins, dtype=torch.bool)
    first[1:] = bins[1:] != bins[:-1]
    assert torch.equal(ay[:2, 0].flatten(), ys[first]) and torch.equal(ax[:2, 0].flatten(), xs[first])
    assert (out[:2, 0] == 2.5).all()
    assert (out[:, 1] == -10000.0).all() and (ay[:, 1] == -1).all() and (ax[:, 1] == -1).all()
    assert (out[2] == -10000.0).all() and (ay[2] == -1).all()  # the empty RoI
    assert not torch.isnan(out).any()  # some samples of channel 2 are NaN, none of its bins only NaN
    want = _ref(x, rois, 2, 2, 1.0, 0, 0, True, grad)
    assert torch.equal(out, want[0]) and torch.equal(ay, want[1]) and torch.equal(ax, want[2])
    assert torch.equal(gi, want[3])


@pytest.mark.parametrize("mode", [0, 1])
def test_samples_outside_read_pixel_zero_with_weight_zero(monkeypatch, mode):
    """mmcv's pre-calculation gives a sample outside [-1, H] weight 0 at pixel (0, 0): an inf at the
    border pixel its clamped corners would read must not turn it into NaN."""
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    x[0, :, 4, :] = float("inf")
    x[0, :, :, 5] = float("inf")
    rois = torch.tensor([[0, 6.5, 5.5, 9.0, 8.0], [0, 0.5, 0.5, 3.0, 2.5]], dtype=torch.float64)
    _, roi, ys, xs = RA._Rois(rois, 2, 2, 1.0, 0, True).samples()
    assert ((ys > 5) | (xs > 6))[roi == 0].all()  # every sample of the first RoI is outside
    assert ((ys < 3) & (xs < 4))[roi == 1].all()  # the second one's never touch the inf pixels
    out = run(x, rois, 2, 2, 1.0, 0, mode, True)[0]
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    want = _ref(x, rois, 2, 2, 1.0, 0, mode, True, torch.zeros(2, 2, 2, 2, dtype=torch.float64))
    assert torch.equal(out, want[0])


def test_no_rois_writes_nothing(monkeypatch):
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    x = torch.randn(1, 3, 4, 4)
    for mode in (0, 1):
        out, ay, ax, gi = run(x, torch.zeros((0, 5)), 2, 2, 1.0, 0, mode, True, torch.zeros(0, 3, 2, 2))
        assert out.shape == (0, 3, 2, 2) and torch.equal(gi, torch.zeros_like(x))


def test_float32_model_shape_equals_float64_rounded(monkeypatch):
    """Faster R-CNN-like call (7x7, scale 1/4, adaptive, many grid groups, 2 images) in float32: equal to
    the float64 result within float32 rounding, and chunking-invariant bit for bit."""
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 8, 40, 52, generator=g)
    ctr = torch.rand(120, 2, generator=g) * torch.tensor([208.0, 160.0])
    wh = torch.rand(120, 2, generator=g) * 110 + 2
    rois = torch.cat([torch.randint(0, 2, (120, 1), generator=g).float(), ctr - wh / 2, ctr + wh / 2], 1)
    grad = torch.randn(120, 8, 7, 7, generator=g)
    for mode in (0, 1):
        got = run(x, rois, 7, 7, 0.25, 0, mode, True, grad)
        ref = run(x.double(), rois.double(), 7, 7, 0.25, 0, mode, True, grad.double())
        # coordinates up to ~50 carry float32 rounding of ~4e-6 times image slopes of a few units
        assert (got[0].double() - ref[0]).abs().max().item() <= 1e-4
        assert (got[3].double() - ref[3]).abs().max().item() <= 1e-3
        monkeypatch.setattr(RT, "_CHUNK", 1 << 12)
        again = run(x, rois, 7, 7, 0.25, 0, mode, True, grad)
        monkeypatch.undo()
        monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
        assert all(torch.equal(a, b) for a, b in zip(got, again) if a.numel())
