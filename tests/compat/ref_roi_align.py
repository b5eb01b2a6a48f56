"""Independent float64 reference for mmcv's roi_align (forward, backward, avg and max modes).

Plain Python loops written from the semantics (research notes mmcv_ops.md), not from
envdoctor.compat: per RoI and bin a grid of samples, bilinear with the kernels' clamping,
zero outside [-1, H] x [-1, W]; avg divides by max(gh*gw, 1), max keeps the first largest.
"""

import math
import struct


def _f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def _bilinear(y, x, H, W):
    """[(row, col, weight)] of one sample, [] if outside."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y = max(y, 0.0)
    x = max(x, 0.0)
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
    hy, hx = 1 - ly, 1 - lx
    return [(y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx)]


def _geometry(roi, ph, pw, scale, sr, aligned):
    off = 0.5 if aligned else 0.0
    scale = _f32(scale)
    sw, sh = roi[1] * scale - off, roi[2] * scale - off
    rw, rh = roi[3] * scale - off - sw, roi[4] * scale - off - sh
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    gh = sr if sr > 0 else math.ceil(_f32(rh / ph))
    gw = sr if sr > 0 else math.ceil(_f32(rw / pw))
    return int(roi[0]), sh, sw, rh / ph, rw / pw, gh, gw


def _samples(geo, i, j):
    _, sh, sw, bh, bw, gh, gw = geo
    for iy in range(gh):
        y = sh + i * bh + (iy + 0.5) * bh / gh
        for ix in range(gw):
            yield y, sw + j * bw + (ix + 0.5) * bw / gw


def roi_align_ref(x, rois, ph, pw, scale, sr, mode, aligned, grad_out=None):
    """x: nested lists [B][C][H][W]; returns (out, argmax_y, argmax_x, grad_input or None)."""
    B, C, H, W = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    R = len(rois)
    out = [[[[0.0] * pw for _ in range(ph)] for _ in range(C)] for _ in range(R)]
    amy = [[[[-1.0] * pw for _ in range(ph)] for _ in range(C)] for _ in range(R)]
    amx = [[[[-1.0] * pw for _ in range(ph)] for _ in range(C)] for _ in range(R)]
    gin = [[[[0.0] * W for _ in range(H)] for _ in range(C)] for _ in range(B)]
    for r, roi in enumerate(rois):
        geo = _geometry(roi, ph, pw, scale, sr, aligned)
        b, gh, gw = geo[0], geo[5], geo[6]
        count = max(gh * gw, 1)
        for c in range(C):
            for i in range(ph):
                for j in range(pw):
                    s, best, arg = 0.0, -10000.0, (-1.0, -1.0)
                    for y, xx in _samples(geo, i, j):
                        v = sum(w * x[b][c][yy][xc] for yy, xc, w in _bilinear(y, xx, H, W))
                        s += v
                        if v > best:
                            best, arg = v, (y, xx)
                    out[r][c][i][j] = s / count if mode == 1 else best
                    amy[r][c][i][j], amx[r][c][i][j] = arg
                    if grad_out is None:
                        continue
                    g = grad_out[r][c][i][j]
                    if mode == 1:
                        for y, xx in _samples(geo, i, j):
                            for yy, xc, w in _bilinear(y, xx, H, W):
                                gin[b][c][yy][xc] += g * w / (gh * gw)
                    elif arg[0] != -1.0:
                        for yy, xc, w in _bilinear(arg[0], arg[1], H, W):
                            gin[b][c][yy][xc] += g * w
    return out, amy, amx, (gin if grad_out is not None else None)
