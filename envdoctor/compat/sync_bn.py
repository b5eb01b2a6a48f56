"""mmcv's ``sync_bn_*`` kernels (MMSyncBN), in PyTorch: the per-process halves of synchronized
batch norm.

mmcv has them on CUDA only (csrc/common/cuda/sync_bn_cuda_kernel.cuh).  The synchronization is
not in the kernels: mmcv's ``SyncBatchNormFunction`` all-reduces the statistics and the weight
and bias gradients with ``torch.distributed`` between the calls, so the kernels are plain
per-process reductions and elementwise maps over ``[N, C, S]`` (the input flattened after dim
1), writing caller-allocated float32 tensors:

* ``sync_bn_forward_mean(input, mean)``: ``mean[c] = sum(x[:, c]) / (N*S)``;
* ``sync_bn_forward_var(input, mean, var)``: ``var[c] = sum((x - mean[c])^2) / (N*S)`` (the
  all-reduced mean);
* ``sync_bn_forward_output(input, mean, var, weight, bias, running_mean, running_var, norm,
  std, output, eps, momentum, group_size)``: ``std = sqrt(var + eps)``, ``norm = (x -
  mean)/std``, ``output = norm*weight + bias``; running mean/var updated with ``momentum``
  (mmcv passes it as a 1-element tensor), the variance unbiased by ``count/(count - 1)`` with
  ``count = N*S*group_size`` (not when ``count <= 1``);
* ``sync_bn_backward_param(grad_output, norm, grad_weight, grad_bias)``: ``sum(go*norm)``,
  ``sum(go)`` per channel (overwritten);
* ``sync_bn_backward_data(grad_output, weight, grad_weight, grad_bias, norm, std,
  grad_input)``: ``weight*(go - (grad_weight*norm + grad_bias)/(N*S))/std`` (N*S local).

Like the kernels' float buffers, everything is computed in float32 (float16 data is read as
float32, the output rounded once).
"""

import torch

__all__ = ["sync_bn_forward_mean", "sync_bn_forward_var", "sync_bn_forward_output",
           "sync_bn_backward_param", "sync_bn_backward_data"]

_F = torch.float32


def _f32(v):
    return float(torch.tensor(float(v), dtype=_F))


def _x3(t):
    if t.dim() != 3:
        raise RuntimeError("sync_bn: expected a [N, C, S] tensor, got %dD" % t.dim())
    return t.detach().to(_F)


def _per_channel(t):
    return t.detach().to(_F).view(1, -1, 1)


def _write(dst, value):
    if dst is None or dst.numel() == 0:
        return
    with torch.no_grad():
        dst.copy_(value.reshape(dst.shape).to(dst.dtype))


def sync_bn_forward_mean(input, mean):
    x = _x3(input)
    _write(mean, x.sum(dim=(0, 2)) / (x.size(0) * x.size(2)))


def sync_bn_forward_var(input, mean, var):
    x = _x3(input)
    d = x - _per_channel(mean)
    _write(var, (d * d).sum(dim=(0, 2)) / (x.size(0) * x.size(2)))


def sync_bn_forward_output(input, mean, var, weight, bias, running_mean, running_var, norm, std,
                           output, eps, momentum, group_size):
    x = _x3(input)
    v = var.detach().to(_F)
    m = mean.detach().to(_F)
    s = torch.sqrt(v + _f32(eps))
    nrm = (x - m.view(1, -1, 1)) / s.view(1, -1, 1)
    out = nrm
    if weight is not None and weight.numel():
        out = nrm * _per_channel(weight) + _per_channel(bias)
    _write(norm, nrm)
    _write(output, out)
    _write(std, s)
    if running_mean is not None and running_mean.numel():
        # float arithmetic like the kernel: (1 - momentum) and the unbiasing in float32
        mom = torch.tensor(float(momentum), dtype=_F, device=x.device)
        keep = 1 - mom
        count = x.size(0) * x.size(2) * int(group_size)
        unbiased = v * count / (count - 1) if count > 1 else v
        with torch.no_grad():
            running_mean.copy_(mom * m + keep * running_mean.detach().to(_F))
            running_var.copy_(mom * unbiased + keep * running_var.detach().to(_F))


def sync_bn_backward_param(grad_output, norm, grad_weight, grad_bias):
    go = _x3(grad_output)
    _write(grad_weight, (go * norm.detach().to(_F)).sum(dim=(0, 2)))
    _write(grad_bias, go.sum(dim=(0, 2)))


def sync_bn_backward_data(grad_output, weight, grad_weight, grad_bias, norm, std, grad_input):
    go = _x3(grad_output)
    factor = go.size(0) * go.size(2)
    gi = _per_channel(weight) * (go - (_per_channel(grad_weight) * norm.detach().to(_F)
                                       + _per_channel(grad_bias)) / factor) / _per_channel(std)
    _write(grad_input, gi)
