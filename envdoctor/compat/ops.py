"""Exact deformable convolution (DCNv1 and modulated DCNv2) with mmcv's semantics.

Two backends compute the same numbers: ``"torch"`` (pure PyTorch, :mod:`.dcn_torch`) and
``"torchvision"`` (torchvision's compiled kernel with mmcv's offset-gradient rule,
:mod:`.dcn_tv`); ``"auto"`` picks the fastest exact one for the call (see
:func:`select_backend`): the torch backend on CPU, torchvision's kernel on CUDA when it loads.
This module validates the arguments, dispatches and holds the public functions.

Nothing here silently degrades: a case a backend cannot do raises
:class:`CompatUnsupportedError` naming the case.

This module imports only the standard library and torch (torchvision lazily).
"""

import os

import torch

from .dcn_torch import DeformConvTorch, torch_backward
from .dcn_tv import _TV_STATE, run_torchvision, torchvision_available, tv_supports
from .errors import CompatUnsupportedError

__all__ = [
    "CompatUnsupportedError",
    "BACKENDS",
    "deform_conv2d",
    "modulated_deform_conv2d",
    "torchvision_available",
    "select_backend",
    "reset_backend_choice",
    "output_size",
    "forward_nograd",
    "backward",
]

BACKENDS = ("auto", "torch", "torchvision")

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _pair(v, name):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError("%s must be an int or a pair of ints, got %r" % (name, v))
        return int(v[0]), int(v[1])
    return int(v), int(v)


def output_size(in_hw, kernel_hw, stride, padding, dilation):
    """Output (height, width) of a convolution, as mmcv computes it."""
    out = []
    for d in range(2):
        k_eff = dilation[d] * (kernel_hw[d] - 1) + 1
        out.append((in_hw[d] + 2 * padding[d] - k_eff) // stride[d] + 1)
    return tuple(out)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check(input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    if input.dim() != 4:
        raise ValueError(
            "Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    if weight.dim() != 4:
        raise ValueError("Expected 4D weight (out, in/groups, kh, kw), got %dD" % weight.dim())
    if input.dtype not in _FLOAT_DTYPES:
        raise CompatUnsupportedError(
            "deformable convolution: dtype %s is not supported (float64, float32, "
            "float16 and bfloat16 are)" % (input.dtype,))
    for name, t in (("offset", offset), ("weight", weight), ("mask", mask), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise ValueError("%s has dtype %s but input has %s" % (name, t.dtype, input.dtype))
        if t.device != input.device:
            raise ValueError("%s is on %s but input is on %s" % (name, t.device, input.device))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            "stride and dilation must be >= 1 and padding >= 0, got stride=%r padding=%r "
            "dilation=%r" % (stride, padding, dilation))
    B, C, H, W = input.shape
    Cout, Cg, kh, kw = weight.shape
    groups = int(groups)
    deform_groups = int(deform_groups)
    if groups < 1 or deform_groups < 1:
        raise ValueError("groups and deform_groups must be >= 1")
    if Cg * groups != C:
        raise ValueError(
            "input has %d channels but weight expects %d (weight.size(1)=%d x groups=%d)"
            % (C, Cg * groups, Cg, groups))
    if Cout % groups != 0:
        raise ValueError("out_channels %d is not divisible by groups %d" % (Cout, groups))
    if C % deform_groups != 0:
        raise ValueError(
            "input channels %d are not divisible by deform_groups %d" % (C, deform_groups))
    Ho, Wo = output_size((H, W), (kh, kw), stride, padding, dilation)
    if Ho <= 0 or Wo <= 0:
        raise ValueError(
            "convolution input is too small (output would be %s)"
            % "x".join(str(s) for s in (B, Cout, Ho, Wo)))
    K = kh * kw
    if offset.dim() != 4 or tuple(offset.shape) != (B, deform_groups * 2 * K, Ho, Wo):
        raise ValueError(
            "offset must have shape %s = (batch, deform_groups*2*kh*kw, out_h, out_w), got %s"
            % ((B, deform_groups * 2 * K, Ho, Wo), tuple(offset.shape)))
    if mask is not None and (mask.dim() != 4 or tuple(mask.shape) != (B, deform_groups * K, Ho, Wo)):
        raise ValueError(
            "mask must have shape %s = (batch, deform_groups*kh*kw, out_h, out_w), got %s"
            % ((B, deform_groups * K, Ho, Wo), tuple(mask.shape)))
    if bias is not None and tuple(bias.shape) != (Cout,):
        raise ValueError("bias must have shape (%d,), got %s" % (Cout, tuple(bias.shape)))
    return Ho, Wo



# private names kept for tests and bench/ (they patch the torchvision state and probe dtypes)
_tv_supports = tv_supports
_TV_STATE = _TV_STATE


# ---------------------------------------------------------------------------
# backend selection and public functions
# ---------------------------------------------------------------------------


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# the ``auto`` choice per (device, dtype, torchvision state) and the override read once
_CHOICE: dict = {}
# validated call shapes -> (Ho, Wo): a repeated call (every step of a model) is checked once
_CHECKED: dict = {}
_CHECKED_MAX = 4096


def _choose(device, dtype, env):
    if env in ("torch", "torchvision"):
        return env
    if device.type != "cuda":
        return "torch"
    ok, _ = torchvision_available()
    if ok and _tv_supports(device, dtype):
        return "torchvision"
    return "torch"


def select_backend(input, backend="auto", needs_grad=False):
    """Resolve ``backend`` to "torch" or "torchvision" for a call on ``input``.

    ``auto``: on CUDA, torchvision's kernel when it loads and supports the dtype
    (a fused native kernel); on CPU and everywhere else the torch backend, which
    bench/bench_compat.py measures faster than torchvision's CPU kernel at the
    E2FGVI shape for forward (~0.4x) and forward+backward (~0.25x).  Both are
    exact, so the choice changes results only by float rounding.
    ``needs_grad`` is accepted for callers that know it; the current policy does
    not depend on it.  ``ENVDOCTOR_COMPAT_BACKEND=torch|torchvision`` overrides
    ``auto``; like ``ENVDOCTOR_COMPAT_CHUNK_BYTES`` it is read once per process (a
    missing variable costs a raised KeyError per lookup, ~2 us, on every call of a
    training loop otherwise); :func:`reset_backend_choice` reads it again.  The choice is
    made once per device and dtype, then it is one dict lookup.
    """
    if backend == "auto":
        # the torchvision probe's state is part of the key (None until probed on a GPU)
        key = (input.device, input.dtype, _TV_STATE.get("ok"))
        name = _CHOICE.get(key)
        if name is None:
            if "override" not in _CHOICE:
                _CHOICE["override"] = os.environ.get("ENVDOCTOR_COMPAT_BACKEND", "").strip().lower()
            name = _CHOICE[key] = _choose(input.device, input.dtype, _CHOICE["override"])
        return name
    if backend not in BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (BACKENDS, backend))
    return backend


def reset_backend_choice():
    """Forget the ``auto`` choices and read ``ENVDOCTOR_COMPAT_BACKEND`` again."""
    _CHOICE.clear()


def _shape_key(input, offset, mask, weight, bias, stride, padding, dilation, groups,
               deform_groups):
    return (input.shape, offset.shape, weight.shape, input.dtype, offset.dtype, weight.dtype,
            input.device, offset.device, weight.device,
            None if mask is None else (mask.shape, mask.dtype, mask.device),
            None if bias is None else (bias.shape, bias.dtype, bias.device),
            stride, padding, dilation, groups, deform_groups)


def _checked(input, offset, mask, weight, bias, stride, padding, dilation, groups,
             deform_groups):
    """``_check`` once per call shape (its result depends on nothing else)."""
    key = _shape_key(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deform_groups)
    hw = _CHECKED.get(key)
    if hw is None:
        hw = _check(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                    deform_groups)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = hw
    return hw


def _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
              deform_groups, backend):
    stride, padding, dilation, groups, deform_groups = _normalize(
        stride, padding, dilation, groups, deform_groups)
    Ho, Wo = _checked(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                      deform_groups)
    if input.shape[0] == 0:
        out = input.new_zeros((0, weight.shape[0], Ho, Wo))
        # keep the graph connected so backward works on empty batches
        parts = [input.sum() * 0, offset.sum() * 0, weight.sum() * 0]
        if mask is not None:
            parts.append(mask.sum() * 0)
        if bias is not None:
            parts.append(bias.sum() * 0)
        return out + sum(parts)
    name = select_backend(input, backend, _needs_grad(input, offset, mask, weight, bias))
    if name == "torchvision":
        return run_torchvision(input, offset, mask, weight, bias, stride, padding, dilation,
                                groups, deform_groups)
    return DeformConvTorch.apply(input, offset, mask, weight, bias, stride, padding, dilation,
                                  groups, deform_groups, Ho, Wo)


def _normalize(stride, padding, dilation, groups, deform_groups):
    return (_pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"),
            int(groups), int(deform_groups))


def forward_nograd(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                   deform_groups, backend="auto"):
    """Output of the (modulated if ``mask`` is given) deformable convolution, no autograd graph."""
    with torch.no_grad():
        return _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                         deform_groups, backend)


def backward(input, offset, mask, weight, has_bias, grad_out, stride, padding, dilation, groups,
             deform_groups, needs=(True, True, True, True, True), backend="auto"):
    """Gradients (input, offset, mask, weight, bias) for ``grad_out``; None where not needed.

    Used by the ``mmcv._ext`` stand-in, whose callers own the autograd Function.
    """
    stride, padding, dilation, groups, deform_groups = _normalize(
        stride, padding, dilation, groups, deform_groups)
    bias = input.new_zeros((weight.shape[0],)) if has_bias else None
    Ho, Wo = _check(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                    deform_groups)
    needs = tuple(bool(n) for n in needs)
    if mask is None:
        needs = needs[:2] + (False,) + needs[3:]
    if not has_bias:
        needs = needs[:4] + (False,)
    name = select_backend(input, backend, needs_grad=True)
    if name == "torch" or input.shape[0] == 0:
        if input.shape[0] == 0:
            zl = [torch.zeros_like(t) if (t is not None and n) else None
                  for t, n in zip((input, offset, mask, weight, bias), needs)]
            return tuple(zl)
        return torch_backward(input, offset, mask, weight, has_bias, grad_out, stride, padding,
                               dilation, groups, deform_groups, Ho, Wo, needs)
    tensors = [input, offset, mask, weight, bias]
    leaves = [None if t is None else t.detach().requires_grad_(n) for t, n in zip(tensors, needs)]
    with torch.enable_grad():
        out = run_torchvision(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], stride,
                               padding, dilation, groups, deform_groups)
        wanted = [t for t, n in zip(leaves, needs) if n]
        grads = list(torch.autograd.grad(out, wanted, grad_out)) if wanted else []
    return tuple(grads.pop(0) if n else None for n in needs)


def deform_conv2d(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,
                  deform_groups=1, bias=False, im2col_step=32, backend="auto"):
    """Deformable convolution v1 with mmcv's argument order.

    ``input`` [B, C, H, W]; ``offset`` [B, deform_groups*2*kh*kw, Ho, Wo] with
    (dy, dx) per kernel tap; ``weight`` [Cout, C/groups, kh, kw].  Like mmcv,
    the offset's dtype decides the compute dtype (``input.type_as(offset)``).
    ``bias`` must be False (mmcv's DCNv1 has no bias); ``im2col_step`` only
    changes summation order in mmcv and is accepted for signature
    compatibility.
    """
    if bias is not False and bias is not None:
        raise CompatUnsupportedError("deform_conv2d: bias is not supported (mmcv: 'Only support "
                                     "bias is False.'); use modulated_deform_conv2d")
    if input is not None and input.dim() != 4:
        raise ValueError("Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    input = input.type_as(offset)
    weight = weight.type_as(input)
    return _dispatch(input, offset, None, weight, None, stride, padding, dilation, groups,
                     deform_groups, backend)


def modulated_deform_conv2d(input, offset, mask, weight, bias=None, stride=1, padding=0,
                            dilation=1, groups=1, deform_groups=1, backend="auto"):
    """Modulated deformable convolution (DCNv2) with mmcv's argument order.

    ``mask`` [B, deform_groups*kh*kw, Ho, Wo]; ``bias`` [Cout] or None.  Casts
    like mmcv: everything to ``offset``'s dtype.
    """
    if input is not None and input.dim() != 4:
        raise ValueError("Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    input = input.type_as(offset)
    weight = weight.type_as(input)
    mask = mask.type_as(input)
    if bias is not None:
        bias = bias.type_as(input)
    return _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deform_groups, backend)
