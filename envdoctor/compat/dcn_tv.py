"""torchvision backend of the exact deformable convolution.

torchvision's compiled ``deform_conv2d`` kernel (CPU and CUDA) when its compiled operator
loads.  Its forward and its input/mask/weight/bias gradients are mmcv's; its offset gradient
differs at exactly ``-1`` (pytorch/vision#6885), so the offset goes through an identity
autograd Function whose backward zeroes the gradient of samples outside mmcv's window.
"""

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .errors import CompatUnsupportedError

__all__ = ["torchvision_available", "tv_supports", "run_torchvision"]

_TV_STATE: dict = {}


def torchvision_available():
    """(ok, reason): whether torchvision's compiled deform_conv2d operator can be called."""
    if "ok" not in _TV_STATE:
        ok, reason = False, ""
        try:
            import torchvision  # noqa: F401
            op = torch.ops.torchvision.deform_conv2d
            # resolving the overload packet raises if the compiled library did not load
            op.default  # noqa: B018
            ok = True
        except Exception as exc:  # ImportError, RuntimeError, AttributeError, OSError...
            reason = "%s: %s" % (type(exc).__name__, exc)
        _TV_STATE["ok"], _TV_STATE["reason"] = ok, reason
    return _TV_STATE["ok"], _TV_STATE["reason"]


# integer base coordinates per call shape: built once (on a GPU, eight small kernels less
# in every backward)
_BASE: dict = {}


def _base(Ho, Wo, kernel_hw, stride, padding, dilation, device, dtype):
    key = (Ho, Wo, kernel_hw, stride, padding, dilation, device, dtype)
    hit = _BASE.get(key)
    if hit is None:
        kh, kw = kernel_hw
        K = kh * kw
        oh = torch.arange(Ho, device=device) * stride[0] - padding[0]
        ow = torch.arange(Wo, device=device) * stride[1] - padding[1]
        ki = torch.arange(kh, device=device) * dilation[0]
        kj = torch.arange(kw, device=device) * dilation[1]
        by = (ki.view(kh, 1, 1, 1) + oh.view(1, 1, Ho, 1)).expand(kh, kw, Ho, 1).reshape(K, Ho, 1)
        bx = (kj.view(1, kw, 1, 1) + ow.view(1, 1, 1, Wo)).expand(kh, kw, 1, Wo).reshape(K, 1, Wo)
        if len(_BASE) >= 256:
            _BASE.clear()
        hit = _BASE[key] = (by.to(dtype), bx.to(dtype))
    return hit


def _valid_mask(offset, in_hw, kernel_hw, stride, padding, dilation, deform_groups):
    """valid[b, g, k, oh, ow] = (-1 < y < H) & (-1 < x < W), computed like the kernels do."""
    B, _, Ho, Wo = offset.shape
    K = kernel_hw[0] * kernel_hw[1]
    off = offset.reshape(B, deform_groups, K, 2, Ho, Wo)
    by, bx = _base(Ho, Wo, tuple(kernel_hw), tuple(stride), tuple(padding), tuple(dilation),
                   offset.device, offset.dtype)
    y = by + off[:, :, :, 0]
    x = bx + off[:, :, :, 1]
    return (y > -1) & (y < in_hw[0]) & (x > -1) & (x < in_hw[1])


class _GateOffsetGrad(Function):
    """Identity on the offset; backward keeps only the samples inside mmcv's window."""

    @staticmethod
    def forward(ctx, offset, in_hw, kernel_hw, stride, padding, dilation, deform_groups):
        ctx.args = (in_hw, kernel_hw, stride, padding, dilation, deform_groups)
        ctx.save_for_backward(offset)
        return offset.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (offset,) = ctx.saved_tensors
        valid = _valid_mask(offset, *ctx.args)  # [B, dg, K, Ho, Wo]
        g = grad.reshape(valid.shape[0], valid.shape[1], valid.shape[2], 2, *valid.shape[3:])
        g = g * valid.unsqueeze(3).to(g.dtype)
        return g.reshape(grad.shape), None, None, None, None, None, None


def tv_supports(device, dtype):
    key = ("dtype", device.type, dtype)
    if key not in _TV_STATE:
        ok = False
        try:
            x = torch.zeros((1, 1, 2, 2), dtype=dtype, device=device)
            w = torch.zeros((1, 1, 1, 1), dtype=dtype, device=device)
            o = torch.zeros((1, 2, 2, 2), dtype=dtype, device=device)
            msk = torch.zeros((1, 1, 2, 2), dtype=dtype, device=device)
            b = torch.zeros((1,), dtype=dtype, device=device)
            torch.ops.torchvision.deform_conv2d(x, w, o, msk, b, 1, 1, 0, 0, 1, 1, 1, 1, True)
            ok = True
        except Exception:
            ok = False
        _TV_STATE[key] = ok
    return _TV_STATE[key]


def run_torchvision(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deform_groups):
    ok, reason = torchvision_available()
    if not ok:
        raise CompatUnsupportedError(
            "backend 'torchvision': torchvision's compiled deform_conv2d operator is not "
            "available (%s)" % reason)
    if not tv_supports(input.device, input.dtype):
        raise CompatUnsupportedError(
            "backend 'torchvision': torchvision's deform_conv2d kernel has no %s "
            "implementation for dtype %s; use backend='torch'" % (input.device.type, input.dtype))
    H, W = input.shape[2:]
    kh, kw = weight.shape[2:]
    if offset.requires_grad and torch.is_grad_enabled():
        offset = _GateOffsetGrad.apply(offset, (H, W), (kh, kw), stride, padding, dilation,
                                       deform_groups)
    use_mask = mask is not None
    if mask is None:
        mask = input.new_zeros((input.shape[0], 1))  # unused when use_mask is False
    if bias is None:
        bias = input.new_zeros((weight.shape[0],))
    return torch.ops.torchvision.deform_conv2d(
        input, weight, offset, mask, bias, stride[0], stride[1], padding[0], padding[1],
        dilation[0], dilation[1], groups, deform_groups, use_mask)

