"""mmcv's ``upfirdn2d`` kernel (StyleGAN2 family: upsample, FIR filter, downsample), in PyTorch.

mmcv has it on CUDA only (its Python uses a reference function on other devices); the stand-in
serves it on every device.  The ``_ext`` binding differs between the two mmcv lines, and one
``upfirdn2d`` here serves both, told apart by the arguments mmcv passes:

* mmcv 1.x ``upfirdn2d(input, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0,
  pad_y1)`` (10 arguments; mmcv passes ``up_x=`` ... by keyword): ``input`` is ``[major, H,
  W, minor]``, ``kernel`` 2-D of the input's dtype, always a true convolution, no gain;
  returns ``[major, out_h, out_w, minor]``.
* mmcv 2.x ``upfirdn2d(input, filter, upx, upy, downx, downy, padx0, padx1, pady0, pady1,
  flip, gain)`` (12 arguments, positional): ``input`` is ``[N, C, H, W]``, ``filter`` 2-D
  float32; ``flip`` False = convolution, True = correlation; the sum is multiplied by ``gain``
  (a C float) afterwards.

Both kernels compute, per output pixel, the sum over the filter taps of the zero-upsampled,
zero-padded (negative padding crops) input; here a transposed convolution (upsampling
without the inserted zeros' products) or a strided convolution (downsampling without the
discarded outputs) computes the same sums.  The output size is
``(H*up + pad0 + pad1 - taps + down) / down``.  Float16 inputs are computed in
float32 and rounded once (mmcv 2.x's kernel does the same; mmcv 1.x's accumulates in half);
float64 is computed in float64 (mmcv 1.x's small-filter CUDA kernels stage operands through
float32 shared memory, so there mmcv is only float32-accurate).
"""

import torch
import torch.nn.functional as F

__all__ = ["upfirdn2d"]

_V1_NAMES = ("input", "kernel", "up_x", "up_y", "down_x", "down_y", "pad_x0", "pad_x1",
             "pad_y0", "pad_y1")
_V2_NAMES = ("input", "filter", "upx", "upy", "downx", "downy", "padx0", "padx1", "pady0",
             "pady1", "flip", "gain")


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def _bind(names, args, kwargs):
    if len(args) > len(names):
        raise TypeError("upfirdn2d(): takes %d arguments, %d given" % (len(names), len(args)))
    bound = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names or k in bound:
            raise TypeError("upfirdn2d(): unexpected or repeated argument %r" % k)
        bound[k] = v
    missing = [n for n in names if n not in bound]
    if missing:
        raise TypeError("upfirdn2d(): missing arguments %s" % ", ".join(missing))
    return [bound[n] for n in names]


def upfirdn2d(*args, **kwargs):
    """``mmcv._ext.upfirdn2d`` with mmcv 1.x's or 2.x's signature (see the module doc)."""
    names = set(kwargs)
    v1 = bool(names & set(_V1_NAMES[1:])) or (len(args) + len(kwargs) == len(_V1_NAMES)
                                              and not names & set(_V2_NAMES[1:]))
    if v1:
        (x, k, upx, upy, downx, downy, px0, px1, py0, py1) = _bind(_V1_NAMES, args, kwargs)
        if x.dim() != 4 or k.dim() != 2:
            raise RuntimeError("upfirdn2d: input must be [major, H, W, minor] and kernel 2-D")
        if k.dtype != x.dtype:
            raise RuntimeError("upfirdn2d: expected kernel of scalar type %s but found %s"
                               % (x.dtype, k.dtype))
        nchw = x.permute(0, 3, 1, 2)
        out = upfirdn2d_nchw(nchw, k, (upx, upy), (downx, downy), (px0, px1, py0, py1),
                             flip=False, gain=None)
        return out.permute(0, 2, 3, 1).contiguous()
    (x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain) = _bind(_V2_NAMES, args,
                                                                          kwargs)
    if f.dtype != torch.float32:
        raise RuntimeError("upfirdn2d: f must be float32")
    if x.dim() != 4 or f.dim() != 2:
        raise RuntimeError("upfirdn2d: x must be rank 4 and f rank 2")
    if x.numel() == 0 or f.numel() == 0:
        raise RuntimeError("upfirdn2d: x and f must not be empty")
    if x.device != f.device:
        raise RuntimeError("upfirdn2d: f must reside on the same device as x")
    return upfirdn2d_nchw(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1),
                          flip=bool(flip), gain=gain)


def compute_dtype(dtype):
    """The kernels' internal type: float32 for half types, the tensor's own otherwise."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise RuntimeError("upfirdn2d: unsupported dtype %s (float16/32/64)" % dtype)
    return dtype


def upfirdn_core(x, f, up, down, pad, flip):
    """``[B, C, H, W]`` in the compute dtype -> the filtered result, no gain, no rounding."""
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = (int(p) for p in pad)
    if min(upx, upy) < 1 or min(downx, downy) < 1:
        raise RuntimeError("upfirdn2d: up- and downsampling factors must be at least 1")
    b, c, h, w = x.shape
    fh, fw = f.shape
    conv_h = h * upy + py0 + py1 - fh + 1
    conv_w = w * upx + px0 + px1 - fw + 1
    if conv_h < 1 or conv_w < 1:
        raise RuntimeError("upfirdn2d: output must be at least 1x1 (input %dx%d, up %s, "
                           "padding %s, filter %dx%d)" % (h, w, up, pad, fh, fw))
    t = x.reshape(b * c, 1, h, w)
    weight = f.to(device=x.device, dtype=x.dtype)
    if flip:
        # correlation = convolution with the mirrored taps
        weight = weight.flip([0, 1])
    if upx > 1 or upy > 1:
        # conv_transpose2d is the convolution of the zero-upsampled image without multiplying
        # the inserted zeros: T[i] = sum_j x[j] f[i - j*up]; the padded "valid" convolution is
        # T shifted by taps - 1 - pad0 (F.pad crops with negative amounts, pads with zeros)
        t = F.conv_transpose2d(t, weight.reshape(1, 1, fh, fw), stride=(upy, upx))
        left, top = px0 - fw + 1, py0 - fh + 1
        t = F.pad(t, [left, conv_w - t.shape[3] - left, top, conv_h - t.shape[2] - top])
        t = t[:, :, ::downy, ::downx]
    else:
        t = F.pad(t, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        t = t[:, :, max(-py0, 0):t.shape[2] - max(-py1, 0),
              max(-px0, 0):t.shape[3] - max(-px1, 0)]
        # conv2d correlates: mirror the taps; the stride skips the discarded outputs
        t = F.conv2d(t, weight.flip([0, 1]).reshape(1, 1, fh, fw), stride=(downy, downx))
    return t.reshape(b, c, t.shape[2], t.shape[3])


def upfirdn2d_nchw(x, f, up, down, pad, flip, gain):
    """One kernel call on ``[N, C, H, W]``: result in ``x``'s dtype, gain after the sum."""
    ct = compute_dtype(x.dtype)
    y = upfirdn_core(x.detach().to(ct), f.detach(), up, down, pad, flip)
    if gain is not None:
        y = y * _f32(gain)
    y = y.to(x.dtype)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        # mmcv 2.x allocates the output in the input's suggested memory format
        y = y.contiguous(memory_format=torch.channels_last)
    return y
