"""mmcv's ``roi_align_forward`` / ``roi_align_backward`` kernels, exact, in PyTorch.

Signatures of mmcv's ``_ext`` bindings (1.x and 2.x); they write into caller-allocated
tensors like the kernels: ``output`` (and ``argmax_y``/``argmax_x`` in max mode) overwritten,
``grad_input`` accumulated.  Semantics (csrc/pytorch/cpu/roi_align.cpp and
common/cuda/roi_align_cuda_kernel.cuh), all arithmetic in the input's dtype:

* RoI ``(batch, x1, y1, x2, y2)``: ``start = x1 * scale - (0.5 if aligned else 0)``, size
  ``end - start``; aligned RoIs must not be negative; unaligned sizes are clamped to >= 1;
  ``scale`` is a C ``float`` (rounded to float32);
* a ``grid_h x grid_w`` sample grid per bin: ``sampling_ratio`` if > 0, else
  ``ceilf(roi_h / pooled_h)`` (the quotient rounded to float32 first, also for double);
* sample ``y = (start_h + ph*bin_h) + ((iy + .5) * bin_h) / grid_h``; zero if outside
  ``[-1, H]`` x ``[-1, W]``; otherwise clamped at 0 and at ``H-1``/``W-1`` and bilinear;
* avg: the samples summed in (iy, ix) order, divided by ``max(grid_h*grid_w, 1)``; its
  backward spreads ``grad * w / (grid_h*grid_w)`` to the four corners;
* max: the first sample with the largest value (start ``-10000`` on CPU, ``-FLT_MAX`` on
  CUDA), its coordinates recorded in ``argmax_y``/``argmax_x`` (``-1`` if none); the backward
  spreads ``grad * w`` at that coordinate.

Avg mode on CPU in float32/float64 can use torchvision's ``roi_align`` kernel, the same
algorithm, when it loads and is provably identical for the call: the scale handed over as its
float32 value, and in float64 with an adaptive grid only when ``ceil`` and mmcv's ``ceilf`` give
the same grid for every RoI (``ENVDOCTOR_COMPAT_BACKEND=torch`` turns it off).
"""

import os

import torch

from .errors import CompatUnsupportedError

__all__ = ["roi_align_forward", "roi_align_backward"]

_DTYPES = (torch.float32, torch.float64)
# elements of one gathered corner block [rois, C, ph, pw] per chunk of RoIs
_CHUNK_ELEMS = 1 << 22


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


class _Rois(object):
    """Per-RoI geometry of a chunk, computed like the kernels (dtype of the input)."""

    def __init__(self, rois, ph, pw, scale, sampling_ratio, aligned):
        off = 0.5 if aligned else 0.0
        self.batch = rois[:, 0].to(torch.int64)  # (int) truncation, like the kernels
        sw = rois[:, 1] * scale - off
        sh = rois[:, 2] * scale - off
        rw = rois[:, 3] * scale - off - sw
        rh = rois[:, 4] * scale - off - sh
        if aligned:
            if bool(((rw < 0) | (rh < 0)).any()):
                raise RuntimeError("ROIs in ROIAlign cannot have non-negative size!")
        else:
            rw = rw.clamp(min=1.0)
            rh = rh.clamp(min=1.0)
        self.sw, self.sh = sw, sh
        self.bw, self.bh = rw / pw, rh / ph
        if sampling_ratio > 0:
            self.gh = torch.full_like(self.batch, sampling_ratio)
            self.gw = torch.full_like(self.batch, sampling_ratio)
        else:
            # ceilf: the quotient goes through float32 first
            self.gh = (rh / ph).to(torch.float32).ceil().to(torch.int64)
            self.gw = (rw / pw).to(torch.float32).ceil().to(torch.int64)
        self.ph, self.pw = ph, pw
        self.rh, self.rw = rh, rw

    def coords(self, iy, ix):
        """Sample coordinates of grid slot (iy, ix) for every RoI and bin: [R, ph, 1], [R, 1, pw]."""
        dt = self.sh.dtype
        dev = self.sh.device
        p_h = torch.arange(self.ph, device=dev, dtype=dt)
        p_w = torch.arange(self.pw, device=dev, dtype=dt)
        gh = self.gh.to(dt).clamp(min=1)[:, None]
        gw = self.gw.to(dt).clamp(min=1)[:, None]
        y = (self.sh[:, None] + p_h[None, :] * self.bh[:, None]) + ((iy + 0.5) * self.bh[:, None]) / gh
        x = (self.sw[:, None] + p_w[None, :] * self.bw[:, None]) + ((ix + 0.5) * self.bw[:, None]) / gw
        return y[:, :, None], x[:, None, :]

    def slot_valid(self, iy, ix):
        return ((self.gh > iy) & (self.gw > ix))[:, None, None]


def _bilinear(y, x, H, W):
    """Corner rows/cols and weights like the kernels' pre-calculation; zero outside [-1, H]."""
    inside = (y >= -1.0) & (y <= H) & (x >= -1.0) & (x <= W)
    y = torch.where(y <= 0, torch.zeros_like(y), y)
    x = torch.where(x <= 0, torch.zeros_like(x), x)
    y0 = y.to(torch.int64)
    x0 = x.to(torch.int64)
    ytop = y0 >= H - 1
    xtop = x0 >= W - 1
    y0 = torch.where(ytop, torch.full_like(y0, H - 1), y0)
    x0 = torch.where(xtop, torch.full_like(x0, W - 1), x0)
    y = torch.where(ytop, y0.to(y.dtype), y)
    x = torch.where(xtop, x0.to(x.dtype), x)
    y1 = torch.where(ytop, y0, y0 + 1)
    x1 = torch.where(xtop, x0, x0 + 1)
    ly = y - y0
    lx = x - x0
    hy = 1.0 - ly
    hx = 1.0 - lx
    w = (hy * hx, hy * lx, ly * hx, ly * lx)
    return inside, (y0, x0, y1, x1), w


def _corner_index(batch, H, W, yy, xx):
    return (batch[:, None, None] * H + yy) * W + xx


def _chunks(n, per_roi):
    step = max(1, _CHUNK_ELEMS // max(1, per_roi))
    for r0 in range(0, n, step):
        yield r0, min(n, r0 + step)


def _check(input, rois, pool_mode):
    if input.dtype not in _DTYPES:
        raise CompatUnsupportedError(
            "roi_align: dtype %s is not served by envdoctor's compat layer (float32 and float64 "
            "are)" % (input.dtype,))
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError("roi_align: rois must be (N, 5) = (batch, x1, y1, x2, y2), got %s"
                         % (tuple(rois.shape),))
    if int(pool_mode) not in (0, 1):
        raise ValueError("roi_align: pool_mode must be 0 (max) or 1 (avg), got %r" % (pool_mode,))


def _tv_roi_align(input, geo, sampling_ratio):
    """torchvision's roi_align op when it is provably mmcv's kernel for this call, else None."""
    if input.device.type != "cpu":
        return None
    if os.environ.get("ENVDOCTOR_COMPAT_BACKEND", "").strip().lower() == "torch":
        return None
    from .dcn_tv import torchvision_available

    if not torchvision_available()[0]:
        return None
    if input.dtype == torch.float64 and sampling_ratio <= 0:
        # torchvision takes ceil of the double quotient, mmcv ceilf of its float32 rounding
        qh, qw = geo.rh / geo.ph, geo.rw / geo.pw
        if bool((qh.ceil() != qh.to(torch.float32).ceil().to(qh.dtype)).any()
                or (qw.ceil() != qw.to(torch.float32).ceil().to(qw.dtype)).any()):
            return None
    try:
        return torch.ops.torchvision
    except Exception:
        return None


def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width,
                      spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_forward``: fills ``output`` (and the argmax tensors in max mode)."""
    _check(input, rois, pool_mode)
    ph, pw, sr, mode = int(aligned_height), int(aligned_width), int(sampling_ratio), int(pool_mode)
    scale = _f32(spatial_scale)
    B, C, H, W = input.shape
    R = rois.shape[0]
    if R == 0:
        return
    rois = rois.detach().to(input.dtype)
    x = input.detach()
    geo_all = _Rois(rois, ph, pw, scale, sr, bool(aligned))
    if mode == 1:
        tv = _tv_roi_align(x, geo_all, sr)
        if tv is not None:
            out = tv.roi_align(x.contiguous(), rois.contiguous(), scale, ph, pw, sr, bool(aligned))
            output.copy_(out)
            return
    floor_val = -torch.finfo(torch.float32).max if x.device.type == "cuda" else -10000.0
    flat = x.permute(0, 2, 3, 1).reshape(B * H * W, C)
    res = x.new_empty((R, ph, pw, C))
    if mode == 0:
        ay = x.new_empty((R, ph, pw, C))
        ax = x.new_empty((R, ph, pw, C))
    for r0, r1 in _chunks(R, ph * pw * C):
        geo = _Rois(rois[r0:r1], ph, pw, scale, sr, bool(aligned))
        n = r1 - r0
        G_h = int(geo.gh.max()) if n else 0
        G_w = int(geo.gw.max()) if n else 0
        if mode == 1:
            acc = x.new_zeros((n, ph, pw, C))
        else:
            acc = x.new_full((n, ph, pw, C), floor_val)
            by = x.new_full((n, ph, pw, C), -1.0)
            bx = x.new_full((n, ph, pw, C), -1.0)
        for iy in range(G_h):
            for ix in range(G_w):
                yc, xc = geo.coords(iy, ix)
                yc, xc = yc.expand(n, ph, pw), xc.expand(n, ph, pw)
                inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
                val = None
                for (yy, xx), wk in zip(((y0, x0), (y0, x1), (y1, x0), (y1, x1)), w):
                    v = flat.index_select(0, _corner_index(geo.batch, H, W, yy, xx).reshape(-1))
                    term = wk.unsqueeze(-1) * v.view(n, ph, pw, C)
                    val = term if val is None else val + term
                val = torch.where(inside.unsqueeze(-1), val, torch.zeros_like(val))
                slot = geo.slot_valid(iy, ix).unsqueeze(-1)
                if mode == 1:
                    acc = torch.where(slot, acc + val, acc)
                else:
                    upd = slot & (val > acc)
                    acc = torch.where(upd, val, acc)
                    by = torch.where(upd, yc.unsqueeze(-1).expand_as(by), by)
                    bx = torch.where(upd, xc.unsqueeze(-1).expand_as(bx), bx)
        if mode == 1:
            count = (geo.gh * geo.gw).clamp(min=1).to(x.dtype)
            acc = acc / count[:, None, None, None]
        else:
            ay[r0:r1] = by
            ax[r0:r1] = bx
        res[r0:r1] = acc
    output.copy_(res.permute(0, 3, 1, 2))
    if mode == 0:
        argmax_y.copy_(ay.permute(0, 3, 1, 2))
        argmax_x.copy_(ax.permute(0, 3, 1, 2))


def _splat(acc, batch, H, W, corners, contribs, keep):
    """acc[corner, c] += contrib for the kept samples; every tensor is [n, ph, pw, C]-shaped."""
    C = acc.shape[1]
    shape = contribs[0].shape
    chan = torch.arange(C, device=acc.device)
    bidx = batch.view(-1, *([1] * (len(shape) - 1)))
    flat = acc.view(-1)
    for (yy, xx), contrib in zip(((corners[0], corners[1]), (corners[0], corners[3]),
                                  (corners[2], corners[1]), (corners[2], corners[3])), contribs):
        if yy.dim() < len(shape):
            yy, xx = yy.unsqueeze(-1), xx.unsqueeze(-1)
        idx = ((bidx * H + yy) * W + xx) * C + chan
        contrib = torch.where(keep, contrib, torch.zeros_like(contrib))
        flat.index_put_((idx.expand(shape).reshape(-1),), contrib.reshape(-1), accumulate=True)


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height,
                       aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_backward``: accumulates into ``grad_input``."""
    _check(grad_input, rois, pool_mode)
    ph, pw, sr, mode = int(aligned_height), int(aligned_width), int(sampling_ratio), int(pool_mode)
    scale = _f32(spatial_scale)
    B, C, H, W = grad_input.shape
    R = rois.shape[0]
    if R == 0:
        return
    rois = rois.detach().to(grad_input.dtype)
    gout = grad_output.detach().to(grad_input.dtype)
    geo_all = _Rois(rois, ph, pw, scale, sr, bool(aligned))
    if mode == 1:
        tv = _tv_roi_align(grad_input, geo_all, sr)
        if tv is not None:
            gi = tv._roi_align_backward(gout.contiguous(), rois.contiguous(), scale, ph, pw, B, C,
                                        H, W, sr, bool(aligned))
            grad_input.add_(gi)
            return
    acc = torch.zeros((B * H * W, C), dtype=grad_input.dtype, device=grad_input.device)
    g_all = gout.permute(0, 2, 3, 1)  # [R, ph, pw, C]
    for r0, r1 in _chunks(R, ph * pw * C):
        geo = _Rois(rois[r0:r1], ph, pw, scale, sr, bool(aligned))
        g = g_all[r0:r1]
        if mode == 0:
            yc = argmax_y[r0:r1].detach().to(grad_input.dtype).permute(0, 2, 3, 1)
            xc = argmax_x[r0:r1].detach().to(grad_input.dtype).permute(0, 2, 3, 1)
            inside, corners, w = _bilinear(yc, xc, H, W)
            keep = inside & (yc != -1.0)
            _splat(acc, geo.batch, H, W, corners, tuple(g * wk for wk in w), keep)
            continue
        n = r1 - r0
        count = (geo.gh * geo.gw).to(grad_input.dtype)[:, None, None, None]
        for iy in range(int(geo.gh.max())):
            for ix in range(int(geo.gw.max())):
                yc, xc = geo.coords(iy, ix)
                inside, corners, w = _bilinear(yc.expand(n, ph, pw), xc.expand(n, ph, pw), H, W)
                keep = (inside & geo.slot_valid(iy, ix)).unsqueeze(-1)
                # (grad * w) / count per corner, like the kernels
                _splat(acc, geo.batch, H, W, corners,
                       tuple((g * wk.unsqueeze(-1)) / count for wk in w), keep)
    grad_input.add_(acc.view(B, H, W, C).permute(0, 3, 1, 2))
