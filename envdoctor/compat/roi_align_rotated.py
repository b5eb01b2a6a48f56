"""mmcv's ``roi_align_rotated_forward`` / ``_backward`` kernels, exact, in PyTorch.

RoIs ``(batch, cx, cy, w, h, theta)`` (csrc/pytorch/cpu/roi_align_rotated.cpp; CUDA the same):
centre ``c * scale - (0.5 if aligned else 0)``, size ``w * scale`` (unaligned sizes clamped to
>= 1, aligned ones must not be negative), ``theta`` negated when ``clockwise``; the bin grid and
sample offsets are roi_align's (``sampling_ratio`` or ``ceilf(size / pooled)``), measured from
``-size/2`` and rotated: ``y = yy*cos - xx*sin + cy``, ``x = yy*sin + xx*cos + cx``; bilinear as
roi_align (zero outside [-1, H], clamped); the average over ``max(gh*gw, 1)`` samples, summed
in (iy, ix) order; backward ``(grad * w) / (gh*gw)`` to the four corners, accumulated.

mmcv's backward binding is called positionally as ``(top_grad, rois, bottom_grad, ...)``
although pybind names those positions ``rois, grad_input, grad_output``; the positions are
what counts and are kept.
"""

import math

import torch

from .errors import CompatUnsupportedError
from .roi_align import _CHUNK_ELEMS, _DTYPES, _bilinear, _f32, _Rois, _rows

__all__ = ["roi_align_rotated_forward", "roi_align_rotated_backward"]

# elements of one gathered [bins, C] block of the forward (small enough to stay in cache)
_SLOT_ELEMS = 1 << 19


class _RotRois(_Rois):
    """roi_align's per-RoI geometry around the centre, plus the rotation."""

    def __init__(self, rois, ph, pw, scale, sampling_ratio, aligned, clockwise):
        off = 0.5 if aligned else 0.0
        self.batch = rois[:, 0].to(torch.int64)
        self.cx = rois[:, 1] * scale - off
        self.cy = rois[:, 2] * scale - off
        rw = rois[:, 3] * scale
        rh = rois[:, 4] * scale
        theta = -rois[:, 5] if clockwise else rois[:, 5]
        self.cos, self.sin = torch.cos(theta), torch.sin(theta)
        self._grid(rw, rh, ph, pw, sampling_ratio, aligned,
                   "ROIs in ROIAlignRotated do not have non-negative size!")
        self.sh, self.sw = -self.rh / 2.0, -self.rw / 2.0  # the (clamped) size, measured from the centre

    def rotated_samples(self):
        bins, roi, yy, xx = self.samples()
        c, s = self.cos[roi], self.sin[roi]
        y = yy * c - xx * s + self.cy[roi]
        x = yy * s + xx * c + self.cx[roi]
        return bins, roi, y, x


def _args(input, rois, ph, pw, scale, sr):
    if input.dtype not in _DTYPES:
        raise CompatUnsupportedError("roi_align_rotated: dtype %s is not served (float32 and "
                                     "float64 are)" % (input.dtype,))
    if rois.dim() != 2 or rois.shape[1] != 6:
        raise ValueError("roi_align_rotated: rois must be (N, 6) = (batch, cx, cy, w, h, theta)")
    return int(ph), int(pw), _f32(scale), int(sr)


def _chunks(geo_all, R, ph, pw, C):
    per = ph * pw * C * max(1, int(math.ceil(float((geo_all.gh * geo_all.gw).float().mean()))))
    step = max(1, _CHUNK_ELEMS // per)
    for r0 in range(0, R, step):
        yield r0, min(R, r0 + step)


def _groups(geo_all, R, ph, pw, C):
    """(grid h, grid w, RoI ids) chunks: RoIs of one sample grid, ~_SLOT_ELEMS per gathered block."""
    gh, gw = geo_all.gh, geo_all.gw
    key = gh * (int(gw.max()) + 1) + gw
    for k in torch.unique(key).tolist():
        ids = torch.nonzero(key == k).flatten()
        step = max(1, _SLOT_ELEMS // (ph * pw * C))
        g_h, g_w = int(gh[ids[0]]), int(gw[ids[0]])
        for r0 in range(0, ids.shape[0], step):
            yield g_h, g_w, ids[r0:r0 + step]


def roi_align_rotated_forward(input, rois, output, pooled_height, pooled_width, spatial_scale,
                              sampling_ratio, aligned, clockwise):
    """``mmcv._ext.roi_align_rotated_forward``: fills ``output`` [R, C, ph, pw].

    RoIs are taken in groups of one sample grid, so every bin has the same samples: per
    sample slot the four corners of all bins are gathered at once and summed in the kernel's
    order (``((w1*v1 + w2*v2) + w3*v3) + w4*v4`` added to the bin's running sum, slot after
    slot).  A sample outside the image contributes ``0 * input[b, c, 0, 0]``, as in the
    kernel's pre-calculation.
    """
    ph, pw, scale, sr = _args(input, rois, pooled_height, pooled_width, spatial_scale,
                              sampling_ratio)
    B, C, H, W = input.shape
    R = rois.shape[0]
    if R == 0:
        return
    x = input.detach()
    rois = rois.detach().to(x.dtype)
    # channels-last rows, contiguous (for B == 1 the reshape alone is a strided view whose
    # rows are scattered over the whole input: every gather would miss the cache)
    flat = x.permute(0, 2, 3, 1).contiguous().view(B * H * W, C)
    res = x.new_empty((R, ph * pw, C))
    geo_all = _RotRois(rois, ph, pw, scale, sr, bool(aligned), bool(clockwise))
    for g_h, g_w, ids in _groups(geo_all, R, ph, pw, C):
        nb = ids.shape[0] * ph * pw
        g = g_h * g_w
        acc = x.new_zeros((nb, C))
        if g:
            geo = _RotRois(rois.index_select(0, ids), ph, pw, scale, sr, bool(aligned),
                           bool(clockwise))
            _, roi, yc, xc = geo.rotated_samples()
            inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
            b = geo.batch[roi]
            origin = b * (H * W)
            rows = [torch.where(inside, _rows(b, H, W, yy, xx), origin).view(nb, g)
                    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1))]
            wts = [torch.where(inside, wk, torch.zeros_like(wk)).view(nb, g, 1) for wk in w]
            val = x.new_empty((nb, C))
            part = x.new_empty((nb, C))
            for k in range(g):
                torch.index_select(flat, 0, rows[0][:, k], out=val).mul_(wts[0][:, k])
                for c in range(1, 4):
                    torch.index_select(flat, 0, rows[c][:, k], out=part).mul_(wts[c][:, k])
                    val.add_(part)
                acc.add_(val)
        count = torch.full((nb, 1), max(g, 1), dtype=x.dtype, device=x.device)
        res.index_copy_(0, ids, (acc / count).view(ids.shape[0], ph * pw, C))
    output.copy_(res.view(R, ph, pw, C).permute(0, 3, 1, 2))


def roi_align_rotated_backward(rois, grad_input, grad_output, pooled_height, pooled_width,
                               spatial_scale, sampling_ratio, aligned, clockwise):
    """``mmcv._ext.roi_align_rotated_backward``, positions (top_grad, rois, bottom_grad, ...)."""
    top_grad, rois, bottom = rois, grad_input, grad_output
    ph, pw, scale, sr = _args(bottom, rois, pooled_height, pooled_width, spatial_scale,
                              sampling_ratio)
    B, C, H, W = bottom.shape
    R = rois.shape[0]
    if R == 0:
        return
    dt = bottom.dtype
    rois = rois.detach().to(dt)
    g_all = top_grad.detach().to(dt).permute(0, 2, 3, 1).reshape(R * ph * pw, C)
    acc = torch.zeros((B * H * W, C), dtype=dt, device=bottom.device)
    geo_all = _RotRois(rois, ph, pw, scale, sr, bool(aligned), bool(clockwise))
    for r0, r1 in _chunks(geo_all, R, ph, pw, C):
        geo = _RotRois(rois[r0:r1], ph, pw, scale, sr, bool(aligned), bool(clockwise))
        bins, roi, yc, xc = geo.rotated_samples()
        inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
        keep = torch.nonzero(inside).flatten()
        b = geo.batch[roi][keep]
        y0, x0, y1, x1 = y0[keep], x0[keep], y1[keep], x1[keep]
        count = (geo.gh * geo.gw).to(dt)[roi][keep][:, None]
        gb = g_all[r0 * ph * pw:r1 * ph * pw][bins[keep]]
        rows = torch.stack([_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                            _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)], 1).reshape(-1)
        src = torch.stack([(gb * wk[keep][:, None]) / count for wk in w], 1).reshape(-1, C)
        acc.index_add_(0, rows, src)
    bottom.add_(acc.view(B, H, W, C).permute(0, 3, 1, 2))
