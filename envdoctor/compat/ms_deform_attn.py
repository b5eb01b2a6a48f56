"""mmcv's ``ms_deform_attn_forward`` / ``_backward`` kernels (Deformable DETR), exact, in PyTorch.

Signatures of mmcv's ``_ext`` bindings.  mmcv has the kernels on CUDA only (its
``MultiScaleDeformableAttention`` uses its grid_sample function for other devices); they are
served on every device with the CUDA kernel's semantics
(common/cuda/ms_deform_attn_cuda_kernel.cuh), in the tensors' dtype:

* ``value`` [bs, keys, heads, C] holds the levels one after the other (``level_start_index``,
  ``spatial_shapes`` (H, W) per level); ``sampling_locations`` [bs, q, heads, levels, points,
  2] are normalised (x, y); ``attention_weights`` [bs, q, heads, levels, points];
* a sample sits at ``y = loc_y * H - 0.5``, ``x = loc_x * W - 0.5`` and counts only strictly
  inside ``-1 < y < H``, ``-1 < x < W``; bilinear between ``floor`` and ``floor + 1`` with
  corners outside the level as 0; output[b, q, head*C + c] = sum over levels and points of
  attention weight x value;
* backward: ``grad_value`` += corner weight x grad x attention weight; ``grad_attn_weight`` =
  grad . sampled value; ``grad_sampling_loc`` = (W, H) x attention weight x the derivative of
  the bilinear weights with ``floor`` held fixed; zero for samples outside the window.  All
  three are accumulated into the caller's (zero-filled) tensors.

As for deformable convolution, the corner cell is the exact ``floor``; mmcv's kernel uses
``floorf``, which differs for float64 coordinates within float32 rounding below an integer
(see docs/compat.md).  ``im2col_step`` only splits mmcv's work; its divisibility check is kept.
"""

import torch

from .errors import CompatUnsupportedError

__all__ = ["ms_deform_attn_forward", "ms_deform_attn_backward"]

# sampled corner values gathered per chunk of queries (elements)
_CHUNK_ELEMS = 1 << 23


def _check(value, shapes, start, loc, attn, im2col_step):
    if value.dtype not in (torch.float32, torch.float64):
        raise CompatUnsupportedError("ms_deform_attn: dtype %s is not served (float32 and float64 "
                                     "are)" % (value.dtype,))
    if value.dim() != 4 or loc.dim() != 6 or attn.dim() != 5 or loc.shape[-1] != 2:
        raise ValueError("ms_deform_attn: value must be [bs, keys, heads, C], sampling_locations "
                         "[bs, q, heads, levels, points, 2], attention_weights [bs, q, heads, "
                         "levels, points]")
    bs = value.shape[0]
    step = min(bs, int(im2col_step))
    if bs > 0 and (step <= 0 or bs % step != 0):
        raise RuntimeError("batch(%d) must divide im2col_step(%d)" % (bs, step))
    if shapes.shape[0] != loc.shape[3] or start.shape[0] != loc.shape[3]:
        raise ValueError("ms_deform_attn: %d levels in spatial_shapes, %d in sampling_locations"
                         % (shapes.shape[0], loc.shape[3]))
    if int((shapes[:, 0] * shapes[:, 1]).sum()) != value.shape[1]:
        raise ValueError("ms_deform_attn: the levels' H*W do not add up to value's %d keys"
                         % value.shape[1])


class _Samples(object):
    """Corner rows, weights and validity of the samples of queries q0:q1 (all batches)."""

    def __init__(self, value, shapes, start, loc, q0, q1):
        bs, keys, heads, _ = value.shape
        dt = value.dtype
        dev = value.device
        loc = loc[:, q0:q1]
        nl = loc.shape[3]
        H = shapes[:, 0].to(dev).view(1, 1, 1, nl, 1)
        W = shapes[:, 1].to(dev).view(1, 1, 1, nl, 1)
        y = loc[..., 1] * H.to(dt) - 0.5
        x = loc[..., 0] * W.to(dt) - 0.5
        self.valid = (y > -1) & (x > -1) & (y < H) & (x < W)
        y = torch.where(self.valid, y, torch.zeros_like(y))
        x = torch.where(self.valid, x, torch.zeros_like(x))
        y0 = torch.floor(y)
        x0 = torch.floor(x)
        self.ly, self.lx = y - y0, x - x0
        self.hy, self.hx = 1 - self.ly, 1 - self.lx
        y0 = y0.to(torch.int64)
        x0 = x0.to(torch.int64)
        base = start.to(dev).view(1, 1, 1, nl, 1)
        b = torch.arange(bs, device=dev).view(bs, 1, 1, 1, 1)
        m = torch.arange(heads, device=dev).view(1, 1, heads, 1, 1)
        rows, oks = [], []
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            yy, xx = y0 + dy, x0 + dx
            ok = self.valid & (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
            key = base + yy.clamp(min=0) * W + xx.clamp(min=0)
            key = torch.where(ok, key, torch.zeros_like(key))
            rows.append((b * keys + key) * heads + m)
            oks.append(ok)
        hy, hx, ly, lx = self.hy, self.hx, self.ly, self.lx
        self.shape = self.valid.shape  # [bs, q, heads, levels, points]
        n = self.shape[0] * self.shape[1] * self.shape[2]
        # per (batch, query, head): the levels x points x 4 corners, corner last
        self.rows = torch.stack(rows, -1).reshape(n, -1)
        self.ok = torch.stack(oks, -1).to(dt)
        # corner weights, zero for corners outside the level (and samples outside the window)
        self.w = torch.stack((hy * hx, hy * lx, ly * hx, ly * lx), -1) * self.ok
        self.n = n
        self.H, self.W = H.to(dt), W.to(dt)

    def gather(self, vflat):
        """Corner values [n, levels*points*4, C] (rows of corners outside read a dummy row)."""
        return vflat.index_select(0, self.rows.reshape(-1)).view(self.n, -1, vflat.shape[1])


def _chunks(value, loc):
    bs, _, heads, C = value.shape
    nq, nl, npt = loc.shape[1], loc.shape[3], loc.shape[4]
    per_q = max(1, bs * heads * nl * npt * 4 * C)
    step = max(1, _CHUNK_ELEMS // per_q)
    for q0 in range(0, nq, step):
        yield q0, min(nq, q0 + step)


def ms_deform_attn_forward(value, value_spatial_shapes, value_level_start_index,
                           sampling_locations, attention_weights, im2col_step):
    """``mmcv._ext.ms_deform_attn_forward``: returns [bs, queries, heads * C]."""
    _check(value, value_spatial_shapes, value_level_start_index, sampling_locations,
           attention_weights, im2col_step)
    v = value.detach()
    loc = sampling_locations.detach().to(v.dtype)
    attn = attention_weights.detach().to(v.dtype)
    bs, _, heads, C = v.shape
    nq = loc.shape[1]
    vflat = v.reshape(-1, C)
    out = v.new_empty((bs, nq, heads, C))
    for q0, q1 in _chunks(v, loc):
        s = _Samples(v, value_spatial_shapes, value_level_start_index, loc, q0, q1)
        wa = (s.w * attn[:, q0:q1].unsqueeze(-1)).reshape(s.n, 1, -1)
        out[:, q0:q1] = torch.bmm(wa, s.gather(vflat)).view(bs, q1 - q0, heads, C)
    return out.view(bs, nq, heads * C)


def ms_deform_attn_backward(value, value_spatial_shapes, value_level_start_index,
                            sampling_locations, attention_weights, grad_output, grad_value,
                            grad_sampling_loc, grad_attn_weight, im2col_step):
    """``mmcv._ext.ms_deform_attn_backward``: accumulates the three gradients in place."""
    _check(value, value_spatial_shapes, value_level_start_index, sampling_locations,
           attention_weights, im2col_step)
    v = value.detach()
    dt = v.dtype
    loc = sampling_locations.detach().to(dt)
    attn = attention_weights.detach().to(dt)
    bs, _, heads, C = v.shape
    nq = loc.shape[1]
    vflat = v.reshape(-1, C)
    g_all = grad_output.detach().to(dt).reshape(bs, nq, heads, C)
    gv = torch.zeros_like(vflat)
    for q0, q1 in _chunks(v, loc):
        s = _Samples(v, value_spatial_shapes, value_level_start_index, loc, q0, q1)
        tg = g_all[:, q0:q1].reshape(s.n, C, 1)
        a = attn[:, q0:q1]
        # grad . corner value, per corner; corners outside count 0
        A = torch.bmm(s.gather(vflat), tg).view(s.ok.shape) * s.ok
        wa = (s.w * a.unsqueeze(-1)).reshape(s.n, -1, 1)
        gv.index_add_(0, s.rows.reshape(-1), (wa * tg.view(s.n, 1, C)).reshape(-1, C))
        A0, A1, A2, A3 = A.unbind(-1)
        valid = s.valid.to(dt)
        g_attn = (s.w * A).sum(-1) * valid
        gx = s.W * a * valid * (s.hy * (A1 - A0) + s.ly * (A3 - A2))
        gy = s.H * a * valid * (s.hx * (A2 - A0) + s.lx * (A3 - A1))
        grad_attn_weight[:, q0:q1] += g_attn.to(grad_attn_weight.dtype)
        grad_sampling_loc[:, q0:q1] += torch.stack((gx, gy), -1).to(grad_sampling_loc.dtype)
    grad_value += gv.view(grad_value.shape).to(grad_value.dtype)
