"""Independent reference for deformable convolution: plain Python loops over floats.

Written from the mathematical definition of mmcv's kernels (research notes
§2.2-2.3), not from envdoctor.compat:

* sample point of output (oh, ow), kernel tap (i, j), deform group g:
  ``y = oh*stride_h - pad_h + i*dil_h + dy``, ``x = ow*stride_w - pad_w + j*dil_w + dx``
  with ``dy = offset[b, g*2K + 2k]``, ``dx = offset[b, g*2K + 2k + 1]``, ``k = i*kw + j``;
* the sample contributes only if ``-1 < y < H`` and ``-1 < x < W``; its value is
  bilinear interpolation between the corners ``floor(y), floor(y)+1`` x
  ``floor(x), floor(x)+1``, corners outside the image count as 0;
* modulated: times ``mask[b, g*K + k]``;
* gradients: analytic.  Input: the bilinear weight of each corner.  Mask: the
  interpolated value.  Offset: derivative of the bilinear weights with ``floor``
  held fixed (right-hand derivative at integers), and zero for every sample
  outside the open window -- in particular exactly on ``y == -1`` or ``x == -1``
  (mmcv's rule; torchvision differs there).
"""

import math
import struct


def _floorf(v):
    """C's ``floorf`` applied to a double: the value is rounded to float32 first."""
    return math.floor(struct.unpack("f", struct.pack("f", v))[0])


def _nested_zeros(*shape):
    if len(shape) == 1:
        return [0.0] * shape[0]
    return [_nested_zeros(*shape[1:]) for _ in range(shape[0])]


def reference(x, offset, weight, mask=None, bias=None, stride=(1, 1), padding=(0, 0),
              dilation=(1, 1), groups=1, deform_groups=1, grad_out=None, floor="exact"):
    """Return dict(out, and if grad_out is given: input, offset, mask, weight, bias grads).

    All tensors arguments are nested Python lists (``tensor.tolist()``).

    ``floor="floorf"`` replays mmcv's modulated CPU kernel and all its CUDA kernels as
    written (modulated_deform_conv.cpp, *_cuda_kernel.cuh): the corner row/column is
    ``floorf(y)`` (float32 rounding first, also for double tensors) and the corners are read
    with the kernels' own bounds checks (``h_low >= 0``, ``h_high <= H-1``, ...) from the
    flat tensor, so a row index of ``H`` reads the next channel's first row.  Reads past the
    end of the tensor give 0 here (undefined memory in mmcv).  The input gradient is not
    returned in that mode: mmcv's col2im does not use ``floorf``.
    """
    B, C, H, W = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    Cout, Cgr, kh, kw = len(weight), len(weight[0]), len(weight[0][0]), len(weight[0][0][0])
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    K = kh * kw
    Cg = C // deform_groups
    Cog = Cout // groups

    def pix(b, c, yy, xx):
        if 0 <= yy < H and 0 <= xx < W:
            return x[b][c][yy][xx]
        return 0.0

    def pix_flat(b, c, yy, xx):
        # mmcv's pointer arithmetic: plane (b, c) + yy*W + xx, wherever that lands
        i = ((b * C + c) * H + yy) * W + xx
        if 0 <= i < B * C * H * W:
            i, xx = divmod(i, W)
            i, yy = divmod(i, H)
            bb, cc = divmod(i, C)
            return x[bb][cc][yy][xx]
        return 0.0

    def corners(b, c, y0, x0):
        if floor == "exact":
            return (pix(b, c, y0, x0), pix(b, c, y0, x0 + 1), pix(b, c, y0 + 1, x0),
                    pix(b, c, y0 + 1, x0 + 1))
        return (pix_flat(b, c, y0, x0) if y0 >= 0 and x0 >= 0 else 0.0,
                pix_flat(b, c, y0, x0 + 1) if y0 >= 0 and x0 + 1 <= W - 1 else 0.0,
                pix_flat(b, c, y0 + 1, x0) if y0 + 1 <= H - 1 and x0 >= 0 else 0.0,
                pix_flat(b, c, y0 + 1, x0 + 1) if y0 + 1 <= H - 1 and x0 + 1 <= W - 1 else 0.0)

    floor_fn = {"exact": math.floor, "floorf": _floorf}[floor]

    # samples[b][c][k][oh][ow] = (valid, y0, x0, ly, lx, m, value_without_mask)
    cols = _nested_zeros(B, C, K, Ho, Wo)
    info = {}
    for b in range(B):
        for c in range(C):
            g = c // Cg
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oh in range(Ho):
                        for ow in range(Wo):
                            dy = offset[b][g * 2 * K + 2 * k][oh][ow]
                            dx = offset[b][g * 2 * K + 2 * k + 1][oh][ow]
                            m = 1.0 if mask is None else mask[b][g * K + k][oh][ow]
                            y = (oh * sh - ph + i * dh) + dy
                            xx = (ow * sw - pw + j * dw) + dx
                            valid = (-1 < y < H) and (-1 < xx < W)
                            if not valid:
                                info[b, c, k, oh, ow] = (False,)
                                continue
                            y0 = floor_fn(y)
                            x0 = floor_fn(xx)
                            ly = y - y0
                            lx = xx - x0
                            hy = 1.0 - ly
                            hx = 1.0 - lx
                            v1, v2, v3, v4 = corners(b, c, y0, x0)
                            val = hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4
                            cols[b][c][k][oh][ow] = m * val
                            info[b, c, k, oh, ow] = (True, y0, x0, ly, lx, hy, hx, m, val,
                                                     (v1, v2, v3, v4))

    out = _nested_zeros(B, Cout, Ho, Wo)
    for b in range(B):
        for o in range(Cout):
            gi = o // Cog
            for oh in range(Ho):
                for ow in range(Wo):
                    s = 0.0 if bias is None else bias[o]
                    for cl in range(Cgr):
                        c = gi * Cgr + cl
                        for i in range(kh):
                            for j in range(kw):
                                s += weight[o][cl][i][j] * cols[b][c][i * kw + j][oh][ow]
                    out[b][o][oh][ow] = s
    res = {"out": out}
    if grad_out is None:
        return res

    go = grad_out
    g_x = _nested_zeros(B, C, H, W)
    g_off = _nested_zeros(B, deform_groups * 2 * K, Ho, Wo)
    g_mask = _nested_zeros(B, deform_groups * K, Ho, Wo)
    g_w = _nested_zeros(Cout, Cgr, kh, kw)
    g_b = [0.0] * Cout
    for o in range(Cout):
        g_b[o] = sum(go[b][o][oh][ow] for b in range(B) for oh in range(Ho) for ow in range(Wo))
    for b in range(B):
        for c in range(C):
            gi = c // Cgr
            cl = c - gi * Cgr
            g = c // Cg
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oh in range(Ho):
                        for ow in range(Wo):
                            gc = 0.0
                            for o in range(gi * Cog, (gi + 1) * Cog):
                                gc += weight[o][cl][i][j] * go[b][o][oh][ow]
                                g_w[o][cl][i][j] += go[b][o][oh][ow] * cols[b][c][k][oh][ow]
                            rec = info[b, c, k, oh, ow]
                            if not rec[0]:
                                continue
                            _, y0, x0, ly, lx, hy, hx, m, val, (v1, v2, v3, v4) = rec
                            for yy, xx, wgt in ((y0, x0, hy * hx), (y0, x0 + 1, hy * lx),
                                                (y0 + 1, x0, ly * hx), (y0 + 1, x0 + 1, ly * lx)):
                                if 0 <= yy < H and 0 <= xx < W:
                                    g_x[b][c][yy][xx] += m * wgt * gc
                            g_mask[b][g * K + k][oh][ow] += gc * val
                            d_y = -hx * v1 - lx * v2 + hx * v3 + lx * v4
                            d_x = -hy * v1 + hy * v2 - ly * v3 + ly * v4
                            g_off[b][g * 2 * K + 2 * k][oh][ow] += m * gc * d_y
                            g_off[b][g * 2 * K + 2 * k + 1][oh][ow] += m * gc * d_x
    res.update(offset=g_off, weight=g_w)
    if floor == "exact":
        res["input"] = g_x
    if bias is not None:
        res["bias"] = g_b
    if mask is not None:
        res["mask"] = g_mask
    return res
