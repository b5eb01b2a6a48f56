"""mmcv 2.x's ``bias_act`` kernel (StyleGAN3: fused bias, activation, gain, clamp), in PyTorch.

mmcv has it on CUDA only (csrc/pytorch/cuda/bias_act_cuda.cu; its Python uses a reference
function elsewhere); the stand-in serves it on every device with the kernel's own formulas,
element by element, in the kernel's internal type (float32 for float16, the tensor's dtype for
float32/float64), so values equal mmcv's within the rounding of ``exp``/``log``:

* ``grad`` 0 adds ``bias`` (along ``dim``) to ``input``, 1 and 2 add it to ``xref``; ``yy =
  yref / gain`` (0 if gain is 0);
* ``act`` 1 linear, 2 relu, 3 lrelu (``alpha``), 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus,
  9 swish: the forward (grad 0), first (1) and second (2) derivative formulas of the kernel,
  including its saturation at |x| > 80 and swish's recomputed ``yref``; grad >= 2 of the
  piecewise-linear ones (and every grad >= 3 but swish's) is 0;
* times ``gain * dy`` (``dy`` 1 when empty); ``clamp >= 0``: grad 0 clamps to ``[-clamp,
  clamp]``, the gradients are zeroed where ``yref`` is outside ``(-clamp, clamp)``.

``alpha``, ``gain`` and ``clamp`` are C floats (rounded to float32).  Returns a new tensor
with the input's layout.
"""

import torch

__all__ = ["bias_act"]

_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def _internal(dtype):
    if dtype == torch.float16:
        return torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise RuntimeError("bias_act: unsupported dtype %s (float16/32/64)" % dtype)
    return dtype


def _check(x, b, xref, yref, dy, grad, dim, act):
    if b.numel() and (b.dtype != x.dtype or b.device != x.device):
        raise RuntimeError("bias_act: b must have the same dtype and device as x")
    for name, t in (("xref", xref), ("yref", yref), ("dy", dy)):
        if t.numel() and (t.shape != x.shape or t.dtype != x.dtype or t.device != x.device):
            raise RuntimeError("bias_act: %s must have the same shape, dtype, and device as x"
                               % name)
    if b.dim() != 1:
        raise RuntimeError("bias_act: b must have rank 1")
    if b.numel() and not 0 <= dim < x.dim():
        raise RuntimeError("bias_act: dim is out of bounds")
    if b.numel() and b.numel() != x.size(dim):
        raise RuntimeError("bias_act: b has wrong number of elements")
    if grad < 0:
        raise RuntimeError("bias_act: grad must be non-negative")
    if act not in range(1, 10):
        raise RuntimeError("bias_act: no kernel found for the specified activation func")


def bias_act(input, bias, xref, yref, dy, grad, dim, act, alpha, gain, clamp):
    """``mmcv._ext.bias_act(input, bias, xref, yref, dy, grad, dim, act, alpha, gain, clamp)``."""
    grad, dim, act = int(grad), int(dim), int(act)
    _check(input, bias, xref, yref, dy, grad, dim, act)
    ct = _internal(input.dtype)

    def load(t):
        return t.detach().to(ct) if t.numel() else None

    x = input.detach().to(ct)
    zero = x.new_zeros(())
    one = x.new_ones(())
    b, xr, yr, d = load(bias), load(xref), load(yref), load(dy)
    xr = zero.expand(x.shape) if xr is None else xr
    yr = zero.expand(x.shape) if yr is None else yr
    if b is not None:
        b = b.view([-1 if i == dim else 1 for i in range(x.dim())])
        if grad == 0:
            x = x + b
        else:
            xr = xr + b
    alpha_t = x.new_tensor(_f32(alpha))
    gain_t = x.new_tensor(_f32(gain))
    clamp_t = x.new_tensor(_f32(clamp))
    # the forward (grad 0) never reads yref; skip a full-size division there
    yy = None if grad == 0 else (yr / gain_t if float(gain_t) != 0 else zero.expand(x.shape))
    y = _activation(act, grad, x, xr, yy, alpha_t, one)
    if act == 9 and grad >= 1:
        yr = torch.where(xr < -80, zero, xr / (torch.exp(-xr) + one) * gain_t)
    y = y * (gain_t * d if d is not None else gain_t)
    if float(clamp_t) >= 0:
        if grad == 0:
            y = torch.where((y > -clamp_t) & (y < clamp_t), y,
                            torch.where(y >= 0, clamp_t, -clamp_t))
        else:
            y = torch.where((yr > -clamp_t) & (yr < clamp_t), y, zero)
    out = torch.empty_like(input)
    out.copy_(y.to(input.dtype))
    return out


def _activation(act, g, x, xref, yy, alpha, one):
    zero = x.new_zeros(())  # broadcast by torch.where; full-size zeros only where returned
    two = one * 2
    if act == 1:
        return x if g in (0, 1) else torch.zeros_like(x)
    if act in (2, 3):
        neg = zero if act == 2 else x * alpha
        if g == 0:
            return torch.where(x > 0, x, neg)
        return torch.where(yy > 0, x, neg) if g == 1 else torch.zeros_like(x)
    if act == 4:
        if g == 0:
            c = torch.exp(x)
            dd = one / c
            return torch.where(x < -80, -one, torch.where(x > 80, one, (c - dd) / (c + dd)))
        if g == 1:
            return x * (one - yy * yy)
        return x * (one - yy * yy) * (-two * yy) if g == 2 else torch.zeros_like(x)
    if act == 5:
        if g == 0:
            return torch.where(x < -80, zero, one / (torch.exp(-x) + one))
        if g == 1:
            return x * yy * (one - yy)
        return x * yy * (one - yy) * (one - two * yy) if g == 2 else torch.zeros_like(x)
    if act == 6:
        if g == 0:
            return torch.where(x >= 0, x, torch.exp(x) - one)
        if g == 1:
            return torch.where(yy >= 0, x, x * (yy + one))
        return torch.where(yy >= 0, zero, x * (yy + one)) if g == 2 else torch.zeros_like(x)
    if act == 7:
        scale = x.new_tensor(_SELU_SCALE)
        sa = scale * x.new_tensor(_SELU_ALPHA)
        if g == 0:
            return torch.where(x >= 0, scale * x, sa * (torch.exp(x) - one))
        if g == 1:
            return torch.where(yy >= 0, x * scale, x * (yy + sa))
        return torch.where(yy >= 0, zero, x * (yy + sa)) if g == 2 else torch.zeros_like(x)
    if act == 8:
        if g == 0:
            return torch.where(x > 80, x, torch.log(torch.exp(x) + one))
        if g == 1:
            return x * (one - torch.exp(-yy))
        c = torch.exp(-yy)
        return x * c * (one - c) if g == 2 else torch.zeros_like(x)
    # act 9, swish: the kernel's else-branch makes every grad >= 2 the second derivative
    if g == 0:
        return torch.where(x < -80, zero, x / (torch.exp(-x) + one))
    c = torch.exp(xref)
    d = c + one
    if g == 1:
        return torch.where(xref > 40, x, x * c * (xref + d) / (d * d))
    return torch.where(xref > 40, zero, x * c * (xref * (two - d) + two * d) / (d * d * d))
