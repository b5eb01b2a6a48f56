"""mmcv's ``sigmoid_focal_loss_forward`` / ``_backward`` kernels, exact, in PyTorch.

mmcv has these kernels on CUDA only (its CPU dispatch raises); they are served on every
device with the CUDA kernel's element-wise formulas (common/cuda/sigmoid_focal_loss_cuda_kernel.cuh),
in the input's dtype, ``gamma``/``alpha`` as C ``float`` (rounded to float32):

* ``p = 1 / (1 + exp(-x))``; for the target class ``-alpha * (1-p)^gamma * log(max(p, FLT_MIN))``,
  for the others ``-(1-alpha) * p^gamma * log(max(1-p, FLT_MIN))`` (not BCE-with-logits:
  the clamp at FLT_MIN bounds the loss of a saturated logit), times ``weight[target]`` per
  sample when a weight is given; a label equal to the number of classes is background;
* backward ``-alpha * (1-p)^gamma * (1 - p - gamma*p*log(max(p, FLT_MIN)))`` for the target,
  ``-(1-alpha) * p^gamma * (gamma*(1-p)*log(max(1-p, FLT_MIN)) - p)`` for the others, times
  the weight; the reduction is done in mmcv's Python wrapper.

One difference, float64 only: mmcv's forward kernel takes ``expf`` (float32) of the logit
even for double tensors (its backward uses ``exp``); we use ``exp`` in the tensor's dtype in
both, so a float64 loss can differ from mmcv's by ~1e-7 relative, and forward and backward
stay consistent.  Float32 is unaffected.
"""

import torch

from .errors import CompatUnsupportedError

__all__ = ["sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward"]

_FLT_MIN = 1.1754943508222875e-38


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def _prepare(input, target, weight, out):
    if input.dim() != 2 or target.dim() != 1 or input.shape[0] != target.shape[0]:
        raise ValueError("sigmoid_focal_loss: input must be (N, C) and target (N,), got %s and %s"
                         % (tuple(input.shape), tuple(target.shape)))
    if input.dtype not in (torch.float32, torch.float64, torch.float16):
        raise CompatUnsupportedError("sigmoid_focal_loss: dtype %s is not served" % (input.dtype,))
    if tuple(out.shape) != tuple(input.shape):
        raise ValueError("sigmoid_focal_loss: output must have the input's shape %s"
                         % (tuple(input.shape),))
    x = input.detach()
    t = target.detach().to(torch.int64)
    C = x.shape[1]
    classes = torch.arange(C, device=x.device)
    pos = t[:, None] == classes[None, :]
    w = None
    if weight is not None and weight.numel() > 0:
        if bool((t >= weight.numel()).any() | (t < 0).any()):
            # mmcv's kernel reads weight[t] past the end here (undefined memory)
            raise CompatUnsupportedError(
                "sigmoid_focal_loss: a label (%d) outside the %d class weights; mmcv's kernel "
                "reads past the weight tensor for it" % (int(t.max()), weight.numel()))
        w = weight.detach().to(x.dtype)[t][:, None]
    p = 1.0 / (1.0 + torch.exp(-x))
    tiny = torch.tensor(_FLT_MIN, dtype=x.dtype, device=x.device)
    return x, pos, w, p, tiny


def sigmoid_focal_loss_forward(input, target, weight, output, gamma, alpha):
    """``mmcv._ext.sigmoid_focal_loss_forward``: element-wise loss written into ``output``."""
    gamma, alpha = _f32(gamma), _f32(alpha)
    x, pos, w, p, tiny = _prepare(input, target, weight, output)
    one = 1.0 - p
    term_p = torch.pow(one, gamma) * torch.log(torch.maximum(p, tiny))
    term_n = torch.pow(p, gamma) * torch.log(torch.maximum(one, tiny))
    loss = torch.where(pos, -alpha * term_p, -(1.0 - alpha) * term_n)
    if w is not None:
        loss = loss * w
    output.copy_(loss)


def sigmoid_focal_loss_backward(input, target, weight, grad_input, gamma, alpha):
    """``mmcv._ext.sigmoid_focal_loss_backward``: d(loss)/d(input) written into ``grad_input``."""
    gamma, alpha = _f32(gamma), _f32(alpha)
    x, pos, w, p, tiny = _prepare(input, target, weight, grad_input)
    one = 1.0 - p
    term_p = torch.pow(one, gamma) * (one - gamma * p * torch.log(torch.maximum(p, tiny)))
    term_n = torch.pow(p, gamma) * (gamma * one * torch.log(torch.maximum(one, tiny)) - p)
    g = torch.where(pos, -alpha * term_p, -(1.0 - alpha) * term_n)
    if w is not None:
        g = g * w
    grad_input.copy_(g)
