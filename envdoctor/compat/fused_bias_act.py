"""mmcv's ``fused_bias_leakyrelu`` kernel (StyleGAN2 family), exact, in PyTorch.

mmcv has it on CUDA only (its Python uses a reference function on other devices).  The
kernel (csrc/pytorch/cuda/fused_bias_leakyrelu_cuda.cu) adds ``bias`` along dimension 1 (if
not empty), then by ``act * 10 + grad``: 30 ``x > 0 ? x : alpha*x``; 31 ``refer > 0 ? x :
alpha*x`` (the first derivative, given the forward output as ``refer``); 12 and 32 zero;
everything else (10, 11, unknown codes) ``x``; finally times ``scale``.  ``alpha`` and
``scale`` are C floats (rounded to float32).  Returns a new tensor.
"""

import torch

__all__ = ["fused_bias_leakyrelu"]


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def fused_bias_leakyrelu(input, bias, empty, act, grad, alpha, scale):
    """``mmcv._ext.fused_bias_leakyrelu(input, bias, empty(=refer), act, grad, alpha, scale)``."""
    x = input.detach().contiguous()
    if bias.numel():
        shape = [1, -1] + [1] * (x.dim() - 2)
        x = x + bias.detach().to(x.dtype).view(shape)
    alpha, scale = _f32(alpha), _f32(scale)
    code = int(act) * 10 + int(grad)
    if code == 30:
        y = torch.where(x > 0.0, x, x * alpha)
    elif code == 31:
        ref = empty.detach() if empty.numel() else torch.zeros_like(x)
        y = torch.where(ref.reshape(x.shape) > 0.0, x, x * alpha)
    elif code in (12, 32):
        y = torch.zeros_like(x)
    else:
        y = x
    return y * scale
