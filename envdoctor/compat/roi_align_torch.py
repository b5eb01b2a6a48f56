"""The pure-PyTorch roi_align kernels (avg and max, forward and backward), bit for bit mmcv's CPU loops.

Speed comes from the separable geometry: a sample's row coordinate depends only on (RoI, bin
row, iy), its column only on (RoI, bin column, ix).  RoIs are grouped by their sample grid
``(grid_h, grid_w)`` (adaptive ``sampling_ratio <= 0`` gives each RoI its own), so a group's
coordinates are small dense tensors ``[n, pooled, grid]`` per axis and every sample of a
chunk is read with ONE ``index_select`` of the four corners from a channels-last copy of the
input (a channel row is contiguous; the kernels read 4 strided values per channel instead).

Results are the kernels' own, not merely close: the weights are the same products
(``hy * hx`` ...), a sample is ``((w1*v1 + w2*v2) + w3*v3) + w4*v4``, avg adds the samples in
(iy, ix) order starting from 0 and divides by ``max(gh*gw, 1)``; max keeps the first strictly
larger value (``torch.max`` over the sample axis returns the first maximum; NaN is skipped as
the kernels' ``>`` skips it).  Samples outside ``[-1, H] x [-1, W]`` carry weight 0, as in
the kernels' pre-calculation.  The backward passes keep the kernels' order of additions into
each element of ``grad_input`` (RoI, bin, sample, corner), so they too equal mmcv's CPU loop.
"""

import torch

from .roi_geometry import _bilinear, _rows

# elements of the gathered corner block [samples, rois*bins, 4, C] per chunk
_CHUNK = 1 << 21


def _axis(start, bin_size, grid, bins, limit):
    """One axis of a group's samples: [n, bins, grid] coordinate, inside, low, high, l, h."""
    dt = start.dtype
    p = torch.arange(bins, device=start.device, dtype=dt)
    i = torch.arange(grid, device=start.device, dtype=dt)
    c = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]) \
        + ((i[None, None, :] + 0.5) * bin_size[:, None, None]) / grid
    inside = (c >= -1.0) & (c <= limit)
    v = torch.where(c <= 0, torch.zeros_like(c), c)
    lo = v.to(torch.int64)  # truncation of a value >= 0, like the kernels' (int)
    top = lo >= limit - 1
    lo = torch.where(top, torch.full_like(lo, limit - 1), lo)
    v = torch.where(top, lo.to(dt), v)
    hi = torch.where(top, lo, lo + 1)
    ll = v - lo
    return c, inside, lo, hi, ll, 1.0 - ll


def _to_samples(t, y_axis):
    """[n, bins, grid] of one axis -> broadcastable [grid_h, grid_w, n, ph, pw] (sample-major)."""
    t = t.permute(2, 0, 1)
    return t[:, None, :, :, None] if y_axis else t[None, :, :, None, :]


class _Group(object):
    """Corner rows [S, n*P, 4], weights [S, n*P, 4], sample coordinates [S, n*P] of a chunk of
    RoIs sharing one sample grid; S = grid_h*grid_w samples in (iy, ix) order."""

    def __init__(self, geo, idx, gh, gw, H, W, coords):
        n, ph, pw = idx.shape[0], geo.ph, geo.pw
        yc, yin, y0, y1, ly, hy = (_to_samples(t, True) for t in _axis(geo.sh[idx], geo.bh[idx], gh, ph, H))
        xc, xin, x0, x1, lx, hx = (_to_samples(t, False) for t in _axis(geo.sw[idx], geo.bw[idx], gw, pw, W))
        base = (geo.batch[idx] * (H * W))[None, None, :, None, None]
        r0, r1 = base + y0 * W, base + y1 * W
        S, NP = gh * gw, n * ph * pw
        # a sample outside [-1, H] x [-1, W] reads pixel (0, 0) of its image with weight 0, as in the
        # kernels' pre-calculation (so an inf/NaN elsewhere does not leak into it)
        ins = (yin & xin)[..., None]
        rows = torch.stack([r0 + x0, r0 + x1, r1 + x0, r1 + x1], -1)
        self.rows = torch.where(ins, rows, base[..., None]).reshape(S, NP, 4)
        w = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], -1)
        self.w = torch.where(ins, w, torch.zeros_like(w)).reshape(S, NP, 4)
        if coords:  # max mode records the argmax sample's coordinates
            shape = (gh, gw, n, ph, pw)
            self.y = yc.expand(shape).reshape(S, NP)
            self.x = xc.expand(shape).reshape(S, NP)


def _sample_values(flat, rows, w):
    """[s, NP, C]: each sample's bilinear value, the kernels' expression and order."""
    s, NP, _ = rows.shape
    v = flat.index_select(0, rows.reshape(-1)).view(s, NP, 4, -1)
    v.mul_(w[..., None])
    val = v[:, :, 0]
    return val.add_(v[:, :, 1]).add_(v[:, :, 2]).add_(v[:, :, 3])


def _first_max(val):
    """(value, index) of the first maximum over samples of ``val`` [s, NP, C], NaN skipped like the
    kernels' ``>``.  ``amax`` is vectorised; the index is the largest "rank" among the hits."""
    top = val.amax(0)
    if bool(torch.isnan(top).any()):
        val = torch.where(torch.isnan(val), torch.full_like(val, float("-inf")), val)
        top = val.amax(0)
    s = val.shape[0]
    dt = torch.uint8 if s < 256 else torch.int16 if s < 32768 else torch.int32
    rank = torch.arange(s, 0, -1, device=val.device, dtype=dt)[:, None, None]  # s - index
    k = (s - ((val == top) * rank).amax(0).to(torch.int64))[None]
    return torch.gather(val, 0, k)[0], k  # the first hit's own value (-0.0 vs 0.0)


def _max_step(best, arg_y, arg_x, val, ys, xs):
    """Fold the samples ``val`` [s, NP, C] (coordinates ys, xs [s, NP]) into the running max."""
    top, k = _first_max(val)
    y = torch.gather(ys[:, :, None].expand(val.shape), 0, k)[0]
    x = torch.gather(xs[:, :, None].expand(val.shape), 0, k)[0]
    upd = top > best  # an earlier block keeps ties
    return torch.where(upd, top, best), torch.where(upd, y, arg_y), torch.where(upd, x, arg_x)


def forward(x, geo, mode, floor_val):
    """Output (and argmax y/x in max mode) as [R, P, C] tensors; geo: roi_align._Rois of all RoIs."""
    B, C, H, W = x.shape
    R, P = geo.batch.shape[0], geo.ph * geo.pw
    flat = x.permute(0, 2, 3, 1).contiguous().view(B * H * W, C)
    out = x.new_empty((R, P, C))
    ay = ax = None
    if mode == 0:
        ay, ax = x.new_empty((R, P, C)), x.new_empty((R, P, C))
    key = geo.gh * (int(geo.gw.max()) + 1) + geo.gw
    for k in torch.unique(key).tolist():
        sel = torch.nonzero(key == k).flatten()
        gh, gw = int(geo.gh[sel[0]]), int(geo.gw[sel[0]])
        S = gh * gw
        per_roi = P * 4 * C * max(S, 1)
        step = max(1, _CHUNK // per_roi)
        s_step = max(1, _CHUNK // (P * 4 * C) if step == 1 else S)  # a huge grid: blocks of samples
        for i0 in range(0, sel.shape[0], step):
            idx = sel[i0:i0 + step]
            NP = idx.shape[0] * P
            g = _Group(geo, idx, gh, gw, H, W, mode == 0)
            if mode == 1:
                acc = x.new_zeros((NP, C))
                for s0 in range(0, S, s_step):
                    val = _sample_values(flat, g.rows[s0:s0 + s_step], g.w[s0:s0 + s_step])
                    for s in range(val.shape[0]):
                        acc.add_(val[s])
                out[idx] = acc.div_(float(max(S, 1))).view(-1, P, C)
                continue
            best = x.new_full((NP, C), floor_val)
            by, bx = x.new_full((NP, C), -1.0), x.new_full((NP, C), -1.0)
            for s0 in range(0, S, s_step):
                val = _sample_values(flat, g.rows[s0:s0 + s_step], g.w[s0:s0 + s_step])
                best, by, bx = _max_step(best, by, bx, val, g.y[s0:s0 + s_step], g.x[s0:s0 + s_step])
            out[idx] = best.view(-1, P, C)
            ay[idx] = by.view(-1, P, C)
            ax[idx] = bx.view(-1, P, C)
    return out, ay, ax


def _consecutive(R, per_roi):
    """Chunks of consecutive RoIs: the backward keeps the kernels' RoI order of additions."""
    step = max(1, _CHUNK // max(1, per_roi))
    for r0 in range(0, R, step):
        yield r0, min(R, r0 + step)


def backward_avg(acc, g_rows, geo_of, R, P, H, W, mean_samples):
    """Adds avg mode's input gradient into ``acc`` [B*H*W, C] (channels-last rows).

    ``g_rows`` [R*P, C] is grad_output channels-last; ``geo_of(r0, r1)`` the _Rois of a chunk.
    """
    C = acc.shape[1]
    for r0, r1 in _consecutive(R, P * 4 * C * max(1, mean_samples)):
        geo = geo_of(r0, r1)
        bins, roi, yc, xc = geo.samples()
        inside, corners, w = _bilinear(yc, xc, H, W)
        keep = torch.nonzero(inside).flatten()
        b = geo.batch[roi][keep]
        y0, x0, y1, x1 = (t[keep] for t in corners)
        rows = torch.stack([_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                            _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)], 1).reshape(-1)
        wk = torch.stack([t[keep] for t in w], 1).reshape(-1, 1)
        count = (geo.gh * geo.gw).to(acc.dtype)[roi][keep].repeat_interleave(4)[:, None]
        # (grad * w) / count per corner, added in the kernel's (RoI, bin, sample, corner) order
        src = g_rows.index_select(0, (bins[keep] + r0 * P).repeat_interleave(4))
        acc.index_add_(0, rows, src.mul_(wk).div_(count))


def backward_max(acc, g_rows, arg_y, arg_x, batch, P, H, W):
    """Adds max mode's input gradient into ``acc`` [B*H*W, C]: ``grad * w`` at each bin's argmax.

    ``g_rows``, ``arg_y``, ``arg_x`` [R*P, C] channels-last; ``batch`` [R] the RoIs' images.
    """
    C = acc.shape[1]
    flat = acc.new_zeros(acc.numel() + 1)  # the last element takes the skipped samples' adds
    chan = torch.arange(C, device=acc.device)
    for r0, r1 in _consecutive(batch.shape[0], P * C * 4):
        sl = slice(r0 * P, r1 * P)
        yc, xc = arg_y[sl], arg_x[sl]
        inside, (y0, x0, y1, x1), w = _bilinear(yc, xc, H, W)
        keep = inside & (yc != -1.0)  # -1: the bin had no sample
        b = batch[r0:r1].repeat_interleave(P)[:, None]
        # element order (RoI, bin, channel, corner): per element of grad_input the kernel's
        idx = torch.stack([_rows(b, H, W, y0, x0), _rows(b, H, W, y0, x1),
                           _rows(b, H, W, y1, x0), _rows(b, H, W, y1, x1)], -1) * C + chan[None, :, None]
        g = g_rows[sl]
        src = torch.stack([g * wk for wk in w], -1)
        idx = torch.where(keep[..., None], idx, torch.full_like(idx, acc.numel()))
        flat.index_add_(0, idx.reshape(-1), src.reshape(-1))
    acc.view(-1).add_(flat[:-1])
