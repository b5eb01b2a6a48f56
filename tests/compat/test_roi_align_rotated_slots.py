"""The rotated RoIAlign forward gathers per sample slot over RoIs grouped by sample grid
(envdoctor/compat/roi_align_rotated.py): mixed grids in one call, chunk boundaries, the
kernel's summation order bit for bit in float32, samples outside the image."""

import math

import pytest
import torch

from envdoctor.compat import roi_align_rotated as RR
from envdoctor.compat.roi_align import _bilinear, _rows
from test_roi_align_rotated import reference, run


def _rois(g, R, B, span, size, dtype=torch.float64):
    ctr = torch.rand(R, 2, generator=g, dtype=dtype) * span - span / 8
    wh = torch.rand(R, 2, generator=g, dtype=dtype) * size
    th = (torch.rand(R, 1, generator=g, dtype=dtype) - 0.5) * 2 * math.pi
    return torch.cat([torch.randint(0, B, (R, 1), generator=g).to(dtype), ctr, wh, th], 1)


@pytest.mark.parametrize("slot_elems", [1 << 19, 40])
def test_mixed_grids_and_chunks_equal_the_float64_reference(monkeypatch, slot_elems):
    monkeypatch.setattr(RR, "_SLOT_ELEMS", slot_elems)  # 40: a chunk per RoI
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    rois = _rois(g, 14, 2, 14.0, 12.0)
    rois[0, 3:5] = 0.0  # an empty grid (ceilf(0) = 0 samples): output 0
    rois[1, 1:3] = torch.tensor([80.0, -60.0], dtype=torch.float64)  # all samples outside
    geo = RR._RotRois(rois, 2, 3, 1.0, 0, True, False)
    grids = {(int(a), int(b)) for a, b in zip(geo.gh, geo.gw)}
    assert len(grids) >= 4 and (0, 0) in grids  # several groups, one of them empty
    for aligned, clockwise in ((True, False), (False, True)):
        out, _ = run(x, rois, 2, 3, 1.0, 0, aligned, clockwise)
        want, _ = reference(x.tolist(), rois.tolist(), 2, 3, 1.0, 0, aligned, clockwise,
                            torch.zeros(14, 3, 2, 3).tolist())
        assert (out - torch.tensor(want, dtype=torch.float64)).abs().max().item() <= 1e-12
    assert out[1].abs().max().item() == 0.0


def test_float32_sums_in_the_kernels_order():
    # values over 12 orders of magnitude: any other grouping of the sums rounds differently
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 8, 8, generator=g) * 10.0 ** torch.randint(-6, 6, (1, 2, 8, 8),
                                                                      generator=g)
    rois = _rois(g, 6, 1, 8.0, 6.0, dtype=torch.float32)
    ph, pw, sr = 2, 2, 3
    out, _ = run(x, rois, ph, pw, 0.9, sr, True, False)
    geo = RR._RotRois(rois, ph, pw, RR._f32(0.9), sr, True, False)
    bins, roi, y, xx = geo.rotated_samples()
    inside, (y0, x0, y1, x1), w = _bilinear(y, xx, 8, 8)
    flat = x.permute(0, 2, 3, 1).reshape(64, 2)
    want = torch.zeros(6 * ph * pw, 2)
    for s in range(bins.shape[0]):  # sample by sample, as the kernel's loop
        if not inside[s]:
            continue
        b = geo.batch[roi[s]]
        v = [flat[_rows(b, 8, 8, a, c)] for a, c in ((y0[s], x0[s]), (y0[s], x1[s]),
                                                      (y1[s], x0[s]), (y1[s], x1[s]))]
        val = ((w[0][s] * v[0] + w[1][s] * v[1]) + w[2][s] * v[2]) + w[3][s] * v[3]
        want[bins[s]] = want[bins[s]] + val
    want = (want / (sr * sr)).view(6, ph, pw, 2).permute(0, 3, 1, 2)
    assert torch.equal(out, want)


def test_a_sample_outside_reads_the_origin_like_the_kernel():
    # mmcv's pre-calculation gives an outside sample weight 0 at input[b, c, 0, 0]: a NaN
    # there makes the bin NaN in the kernel, and here; a finite one contributes exactly 0
    x = torch.ones(2, 1, 4, 4)
    x[1, 0, 0, 0] = float("nan")
    rois = torch.tensor([[0, 50.0, 50.0, 2.0, 2.0, 0.3], [1, 50.0, 50.0, 2.0, 2.0, 0.3],
                         [1, 2.0, 2.0, 1.0, 1.0, 0.0]])
    out, _ = run(x, rois, 1, 1, 1.0, 2, True, False)
    assert out[0].item() == 0.0 and math.isnan(out[1].item()) and out[2].item() == 1.0
