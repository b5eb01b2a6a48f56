"""RoI geometry shared by the roi_align and roi_align_rotated kernels, computed like mmcv's kernels.

Per-RoI start, size, bin size and sample grid (``_Rois``), every sample of a chunk in the
kernels' order (``_Rois.samples``), the bilinear pre-calculation (``_bilinear``), all in the
input's dtype; ``_f32`` is the C ``float`` the kernels take the scale as.
"""

import torch


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


def _rows(batch, H, W, yy, xx):
    return (batch * H + yy) * W + xx
