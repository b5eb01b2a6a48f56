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
        self.sw, self.sh = sw, sh
        self._grid(rw, rh, ph, pw, sampling_ratio, aligned, "ROIs in ROIAlign cannot have non-negative size!")

    def _grid(self, rw, rh, ph, pw, sampling_ratio, aligned, negative_message):
        """Size rules, bin sizes and sample counts; roi_align_rotated's kernels use the same ones."""
        if aligned:
            if bool(((rw < 0) | (rh < 0)).any()):
                raise RuntimeError(negative_message)
        else:
            rw = rw.clamp(min=1.0)
            rh = rh.clamp(min=1.0)
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

    def samples(self):
        """Every sample of the chunk in the kernels' order (RoI, ph, pw, iy, ix).

        Returns (bin index [S] = roi*ph*pw + ph*pw_..., y [S], x [S]) with
        ``y = (start_h + ph*bin_h) + ((iy + .5) * bin_h) / grid_h`` in the input's dtype.
        """
        dev = self.sh.device
        dt = self.sh.dtype
        n = self.sh.shape[0]
        gg = self.gh * self.gw
        per = gg * (self.ph * self.pw)
        roi = torch.repeat_interleave(torch.arange(n, device=dev), per)
        start = torch.cumsum(per, 0) - per
        k = torch.arange(roi.shape[0], device=dev) - start[roi]
        g = gg[roi]
        b = k // g
        s = k - b * g
        gw = self.gw[roi]
        iy = s // gw
        ix = s - iy * gw
        p_h = b // self.pw
        p_w = b - p_h * self.pw
        bh, bw = self.bh[roi], self.bw[roi]
        y = (self.sh[roi] + p_h.to(dt) * bh) + ((iy.to(dt) + 0.5) * bh) / self.gh[roi].to(dt)
        x = (self.sw[roi] + p_w.to(dt) * bw) + ((ix.to(dt) + 0.5) * bw) / gw.to(dt)
        return roi * (self.ph * self.pw) + b, roi, y, x


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


def _chunks(n, per_roi):
    step = max(1, _CHUNK_ELEMS // max(1, per_roi))
    for r0 in range(0, n, step):
        yield r0, min(n, r0 + step)


def _rows(batch, H, W, yy, xx):
    return (batch * H + yy) * W + xx


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
    """torchvision's ops when its roi_align is provably mmcv's kernel for this call, else None."""
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
        ops = torch.ops.torchvision
        ops.roi_align.default  # noqa: B018
        return ops
    except Exception:
        return None


def _corner_values(flat, rows4):
    """Corner rows [S, C] x 4 read from the channels-last input."""
    return [flat.index_select(0, r) for r in rows4]


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
            output.copy_(tv.roi_align(x.contiguous(), rois.contiguous(), scale, ph, pw, sr,
                                      bool(aligned)))
            return
    floor_val = -torch.finfo(torch.float32).max if x.device.type == "cuda" else -10000.0
    flat = x.permute(0, 2, 3, 1).reshape(B * H * W, C)
    res = x.new_empty((R * ph * pw, C))
    if mode == 0:
        ay = x.new_empty((R * ph * pw, C))
        ax = x.new_empty((R * ph * pw, C))
    per_roi = ph * pw * C * max(1, int((geo_all.gh * geo_all.gw).float().mean().ceil()))
    for r0, r1 in _chunks(R, per_roi):
        geo = _Rois(rois[r0:r1], ph, pw, scale, sr, bool(aligned))
        nb = (r1 - r0) * ph * pw
        bins, roi, yc, xc = geo.samples()
        inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
        b = geo.batch[roi]
        if mode == 1:
            # samples outside add exactly 0: leave them out
            keep = torch.nonzero(inside).flatten()
            b, bins = b[keep], bins[keep]
            y0, x0, y1, x1 = y0[keep], x0[keep], y1[keep], x1[keep]
            w = [wk[keep] for wk in w]
        v = _corner_values(flat, [_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                                  _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)])
        val = ((w[0][:, None] * v[0] + w[1][:, None] * v[1]) + w[2][:, None] * v[2]) \
            + w[3][:, None] * v[3]
        if mode == 1:
            # index_add_ adds the samples of a bin in (iy, ix) order, like the kernel's loop
            acc = x.new_zeros((nb, C)).index_add_(0, bins, val)
            count = (geo.gh * geo.gw).clamp(min=1).to(x.dtype)
            res[r0 * ph * pw:r1 * ph * pw] = acc / count.repeat_interleave(ph * pw)[:, None]
            continue
        val = val * inside.to(val.dtype)[:, None]  # a sample outside is a value of 0
        idx = bins[:, None].expand_as(val)
        best = x.new_full((nb, C), float("-inf")).scatter_reduce_(0, idx, val, "amax")
        # the first sample reaching the maximum (the kernel's strict '>' scan)
        order = torch.arange(val.shape[0], device=x.device)[:, None].expand_as(val)
        hit = torch.where(val == best.gather(0, idx), order, torch.full_like(order, val.shape[0]))
        first = torch.full((nb, C), val.shape[0], dtype=torch.int64,
                           device=x.device).scatter_reduce_(0, idx, hit, "amin")
        found = best > floor_val
        safe = torch.where(found, first, torch.zeros_like(first))
        lo, hi = r0 * ph * pw, r1 * ph * pw
        res[lo:hi] = torch.where(found, best, torch.full_like(best, floor_val))
        ay[lo:hi] = torch.where(found, yc[safe], torch.full_like(best, -1.0))
        ax[lo:hi] = torch.where(found, xc[safe], torch.full_like(best, -1.0))
    output.copy_(res.view(R, ph, pw, C).permute(0, 3, 1, 2))
    if mode == 0:
        argmax_y.copy_(ay.view(R, ph, pw, C).permute(0, 3, 1, 2))
        argmax_x.copy_(ax.view(R, ph, pw, C).permute(0, 3, 1, 2))


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
    dt = grad_input.dtype
    rois = rois.detach().to(dt)
    gout = grad_output.detach().to(dt)
    geo_all = _Rois(rois, ph, pw, scale, sr, bool(aligned))
    if mode == 1:
        tv = _tv_roi_align(grad_input, geo_all, sr)
        if tv is not None:
            gi = tv._roi_align_backward(gout.contiguous(), rois.contiguous(), scale, ph, pw, B, C,
                                        H, W, sr, bool(aligned))
            grad_input.add_(gi)
            return
    acc = torch.zeros((B * H * W, C), dtype=dt, device=grad_input.device)
    g_all = gout.permute(0, 2, 3, 1).reshape(R * ph * pw, C)
    per_roi = ph * pw * C * max(1, int((geo_all.gh * geo_all.gw).float().mean().ceil()))
    for r0, r1 in _chunks(R, per_roi if mode == 1 else ph * pw * C * 4):
        geo = _Rois(rois[r0:r1], ph, pw, scale, sr, bool(aligned))
        g = g_all[r0 * ph * pw:r1 * ph * pw]
        if mode == 0:
            sl = slice(r0, r1)
            yc = argmax_y[sl].detach().to(dt).permute(0, 2, 3, 1).reshape(-1, C)
            xc = argmax_x[sl].detach().to(dt).permute(0, 2, 3, 1).reshape(-1, C)
            inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
            keep = inside & (yc != -1.0)
            b = geo.batch.repeat_interleave(ph * pw)[:, None]
            chan = torch.arange(C, device=acc.device)
            idx = torch.stack([_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                               _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)], -1) * C \
                + chan[None, :, None]
            src = torch.stack([g * wk for wk in w], -1)
            sel = keep.unsqueeze(-1).expand_as(src)
            # order (bin, channel, corner): per element of grad_input the kernel's order
            acc.view(-1).index_add_(0, idx[sel], src[sel])
            continue
        bins, roi, yc, xc = geo.samples()
        inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
        keep = torch.nonzero(inside).flatten()
        b = geo.batch[roi][keep]
        y0, x0, y1, x1 = y0[keep], x0[keep], y1[keep], x1[keep]
        count = (geo.gh * geo.gw).to(dt)[roi][keep][:, None]
        gb = g[bins[keep]]
        rows = torch.stack([_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                            _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)], 1).reshape(-1)
        # (grad * w) / count per corner, in the kernel's (sample, corner) order
        src = torch.stack([(gb * wk[keep][:, None]) / count for wk in w], 1).reshape(-1, C)
        acc.index_add_(0, rows, src)
    grad_input.add_(acc.view(B, H, W, C).permute(0, 3, 1, 2))
