"""mmcv 2.x's ``filtered_lrelu`` and ``filtered_lrelu_act_`` kernels (StyleGAN3), in PyTorch.

mmcv has them on CUDA only (csrc/pytorch/cuda/filtered_lrelu.cu); the stand-in serves them on
every device.  ``filtered_lrelu(x, fu, fd, b, si, up, down, px0, px1, py0, py1, sx, sy, gain,
slope, clamp, flip_filters, writeSigns)`` returns ``(y, signs or None, 0)``: add ``b`` per
channel, upsample with ``fu`` (``up``, the padding, gain ``up**2``), then per element of that
buffer multiply by ``gain``, leaky ReLU with ``slope``, clamp to ``[-clamp, clamp]``, then
filter with ``fd`` and keep every ``down``-th pixel.  ``fu``/``fd`` are float32, rank 2 or
rank 1 (separable: the outer product).  The kernel's fused, tiled computation is the same
sum; mmcv's own fallback (``filtered_lrelu_act_`` between two ``upfirdn2d`` calls) is this
decomposition.  float16 and float32 only, like the kernel (mmcv takes the fallback for
float64); the internal type is float32 and the result is rounded once.

The sign tensor is the kernel's: uint8 ``[N, C, rows, cols/4]``, two bits per element of the
upsampled buffer (bit 0 negative: slope applied, bit 1 clamped), four elements per byte,
``cols`` rounded up to a multiple of 16.  ``writeSigns`` writes it (for the active region
``yh*down - (down-1) + fd_h`` x ``yw*down - (down-1) + fd_w`` of the buffer); a non-empty
``si`` is read instead, at buffer position + ``(sx, sy)``: there the slope is applied for bit
0 and the value zeroed for bit 1; outside it only the gain.  mmcv's backward is this same op
with ``up``/``down`` swapped and the signs of the forward.

``filtered_lrelu_act_(x, si, sx, sy, gain, slope, clamp, writeSigns)`` is the middle step
alone, in place on ``x`` (any of float16/32/64, internal type float32 or float64); it returns
the sign tensor when ``writeSigns`` (``[N, C, H, ceil16(W)/4]``), else None.  Its clamp test
uses ``fabsf`` (float32) also for float64, as the kernel does.
"""

import torch

from .upfirdn2d import upfirdn_core

__all__ = ["filtered_lrelu", "filtered_lrelu_act_"]


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def _pack(codes):
    """``[N, C, H, W]`` codes 0..3 -> the kernel's uint8 ``[N, C, H, ceil16(W)/4]``."""
    n, c, h, w = codes.shape
    wp = (w + 15) & ~15
    full = codes.new_zeros((n, c, h, wp), dtype=torch.uint8)
    full[..., :w] = codes.to(torch.uint8)
    return (full[..., 0::4] | (full[..., 1::4] << 2) | (full[..., 2::4] << 4)
            | (full[..., 3::4] << 6)).contiguous()


def _read_signs(s, shape, sx, sy):
    """The 2-bit codes at buffer positions ``(y + sy, x + sx)``; -1 where outside ``s``."""
    n, c, h, w = shape
    s = s.to(torch.int32)
    codes = torch.stack([(s >> k) & 3 for k in (0, 2, 4, 6)], dim=-1).flatten(3)
    sh, sw = codes.shape[2], codes.shape[3]
    out = torch.full((n, c, h, w), -1, dtype=torch.int32, device=codes.device)
    y0, y1 = max(0, -sy), min(h, sh - sy)
    x0, x1 = max(0, -sx), min(w, sw - sx)
    if y0 < y1 and x0 < x1:
        out[:, :, y0:y1, x0:x1] = codes[:, :, y0 + sy:y1 + sy, x0 + sx:x1 + sx]
    return out


def _act(v, si, sx, sy, gain, slope, clamp, write):
    """gain, leaky ReLU, clamp on ``v`` (internal type); the codes when ``write``."""
    v = v * gain
    if si is not None and si.numel():
        codes = _read_signs(si, v.shape, int(sx), int(sy))
        v = torch.where((codes >= 0) & (codes & 1 == 1), v * slope, v)
        return torch.where((codes >= 0) & (codes & 2 == 2), torch.zeros_like(v), v), None
    neg = v < 0
    v = torch.where(neg, v * slope, v)
    # fabsf: the magnitude is compared as a float32, whatever the internal type
    over = v.abs().to(torch.float32) > clamp
    v = torch.where(over, v.clamp(-clamp, clamp), v)
    codes = torch.where(over, 2, neg.to(torch.int32)) if write else None
    return v, codes


def _check_signs(s, x):
    if s.dtype != torch.uint8 or s.dim() != 4 or not s.is_contiguous():
        raise RuntimeError("filtered_lrelu: signs must be a contiguous rank-4 uint8 tensor")
    if s.size(0) != x.size(0) or s.size(1) != x.size(1):
        raise RuntimeError("filtered_lrelu: signs must have same batch & channels as x")
    if s.device != x.device:
        raise RuntimeError("filtered_lrelu: signs must reside on the same device as x")


def filtered_lrelu_act_(x, si, sx, sy, gain, slope, clamp, writeSigns):
    """``mmcv._ext.filtered_lrelu_act_``: in place on ``x``; returns the signs or None."""
    if x.dim() != 4 or x.numel() == 0:
        raise RuntimeError("filtered_lrelu_act_: x must be a non-empty rank-4 tensor")
    if x.dtype not in (torch.float16, torch.float32, torch.float64):
        raise RuntimeError("filtered_lrelu_act_: x must be float16, float32 or float64")
    if si.numel():
        _check_signs(si, x)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    v = x.detach().to(ct)
    g, sl = v.new_tensor(_f32(gain)), v.new_tensor(_f32(slope))
    # writing signs wins over reading them, as in the kernel
    v, codes = _act(v, None if writeSigns else si, sx, sy, g, sl, _f32(clamp), bool(writeSigns))
    with torch.no_grad():
        x.copy_(v.to(x.dtype))
    return _pack(codes) if writeSigns else None


def _filter2d(f):
    return f if f.dim() == 2 else f[:, None] * f[None, :]


def filtered_lrelu(x, fu, fd, b, si, up, down, px0, px1, py0, py1, sx, sy, gain, slope, clamp,
                   flip_filters, writeSigns):
    """``mmcv._ext.filtered_lrelu``: returns ``(y, signs or None, 0)``."""
    if fu.dtype != torch.float32 or fd.dtype != torch.float32:
        raise RuntimeError("filtered_lrelu: fu and fd must be float32")
    if b.dtype != x.dtype:
        raise RuntimeError("filtered_lrelu: x and b must have the same dtype")
    if x.dtype not in (torch.float16, torch.float32):
        raise RuntimeError("filtered_lrelu: x and b must be float16 or float32")
    if x.dim() != 4 or x.numel() == 0:
        raise RuntimeError("filtered_lrelu: x must be a non-empty rank-4 tensor")
    if fu.dim() not in (1, 2) or fd.dim() not in (1, 2) or not fu.numel() or not fd.numel():
        raise RuntimeError("filtered_lrelu: fu and fd must be non-empty and rank 1 or 2")
    if b.dim() != 1 or b.size(0) != x.size(1):
        raise RuntimeError("filtered_lrelu: b must be a vector with the same number of "
                           "channels as x")
    if up < 1 or down < 1:
        raise RuntimeError("filtered_lrelu: up and down must be at least 1")
    if len({x.device, fu.device, fd.device, b.device}) != 1:
        raise RuntimeError("filtered_lrelu: all input tensors must reside on the same device")
    fu2, fd2 = _filter2d(fu.detach()), _filter2d(fd.detach())
    cw = x.size(3) * up + px0 + px1 - (fu2.size(1) - 1)
    ch = x.size(2) * up + py0 + py1 - (fu2.size(0) - 1)
    if cw <= fd2.size(1) - 1 or ch <= fd2.size(0) - 1:
        raise RuntimeError("filtered_lrelu: upsampled buffer must be at least the size of "
                           "downsampling filter")
    write = bool(writeSigns)
    read = si.numel() > 0 and not write
    if read:
        _check_signs(si, x)
    ct = torch.float32
    t = x.detach().to(ct) + b.detach().to(ct).view(1, -1, 1, 1)
    t = upfirdn_core(t, fu2, (up, up), (1, 1), (px0, px1, py0, py1), bool(flip_filters))
    t = t * _f32(up * up)
    g, sl = t.new_tensor(_f32(gain)), t.new_tensor(_f32(slope))
    t, codes = _act(t, si if read else None, sx, sy, g, sl, _f32(clamp), write)
    y = upfirdn_core(t, fd2, (1, 1), (down, down), (0, 0, 0, 0), bool(flip_filters))
    y = y.to(x.dtype)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    so = None
    if write:
        yh, yw = y.shape[2], y.shape[3]
        sh = yh * down - (down - 1) + fd2.size(0) - 1
        sw = yw * down - (down - 1) + fd2.size(1) - 1
        so = _pack(codes[:, :, :sh, :sw])
    return y, so, 0
