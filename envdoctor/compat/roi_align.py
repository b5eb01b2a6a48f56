"""mmcv's ``roi_align_forward`` / ``roi_align_backward`` kernels, exact, in PyTorch.

Signatures of mmcv's ``_ext`` bindings (1.x and 2.x); they write into caller-allocated
tensors like the kernels: ``output`` (and ``argmax_y``/``argmax_x`` in max mode) overwritten,
``grad_input`` accumulated.  Semantics (csrc/pytorch/cpu/roi_align.cpp and
common/cuda/roi_align_cuda_kernel.cuh), all arithmetic in the input's dtype:

* RoI ``(batch, x1, y1, x2, y2)``: ``start = x1 * scale - (0.5 if aligned else 0)``, size
  ``end - start``; aligned RoIs must not be negative; unaligned sizes are clamped to >= 1;
  ``scale`` is a C ``float`` (rounded to float32);
* a ``grid_h x grid_w`` sample grid per bin: ``sampling_ratio`` if > 0, else
  ``ceilf(roi_h / pooled_h)`` (the quotient rounded to float32 first, also for double);
* sample ``y = (start_h + ph*bin_h) + ((iy + .5) * bin_h) / grid_h``; zero if outside
  ``[-1, H]`` x ``[-1, W]``; otherwise clamped at 0 and at ``H-1``/``W-1`` and bilinear;
* avg: the samples summed in (iy, ix) order, divided by ``max(grid_h*grid_w, 1)``; its
  backward spreads ``grad * w / (grid_h*grid_w)`` to the four corners;
* max: the first sample with the largest value (start ``-10000`` on CPU, ``-FLT_MAX`` on
  CUDA), its coordinates recorded in ``argmax_y``/``argmax_x`` (``-1`` if none); the backward
  spreads ``grad * w`` at that coordinate.

Avg mode on CPU in float32/float64 can use torchvision's ``roi_align`` kernel, the same
algorithm, when it loads and is provably identical for the call: the scale handed over as its
float32 value, and in float64 with an adaptive grid only when ``ceil`` and mmcv's ``ceilf`` give
the same grid for every RoI (``ENVDOCTOR_COMPAT_BACKEND=torch`` turns it off).
"""

import os

import torch

from . import roi_align_torch
from .errors import CompatUnsupportedError
from .roi_geometry import _bilinear, _f32, _Rois, _rows  # noqa: F401 (roi_align_rotated imports them from here)

__all__ = ["roi_align_forward", "roi_align_backward"]

_DTYPES = (torch.float32, torch.float64)
# elements of one gathered corner block per chunk of RoIs (roi_align_rotated's kernels)
_CHUNK_ELEMS = 1 << 22


def _check(input, rois, pool_mode):
    if input.dtype not in _DTYPES:
        raise CompatUnsupportedError(
            "roi_align: dtype %s is not served by envdoctor's compat layer (float32 and float64 "
            "are)" % (input.dtype,))
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError("roi_align: rois must be (N, 5) = (batch, x1, y1, x2, y2), got %s"
                         % (tuple(rois.shape),))
    if int(pool_mode) not in (0, 1):
        raise ValueError("roi_align: pool_mode must be 0 (max) or 1 (avg), got %r" % (pool_mode,))


def _tv_roi_align(input, geo, sampling_ratio):
    """torchvision's ops when its roi_align is provably mmcv's kernel for this call, else None."""
    if input.device.type != "cpu":
        return None
    if os.environ.get("ENVDOCTOR_COMPAT_BACKEND", "").strip().lower() == "torch":
        return None
    from .dcn_tv import torchvision_available

    if not torchvision_available()[0]:
        return None
    if input.dtype == torch.float64 and sampling_ratio <= 0:
        # torchvision takes ceil of the double quotient, mmcv ceilf of its float32 rounding
        qh, qw = geo.rh / geo.ph, geo.rw / geo.pw
        if bool((qh.ceil() != qh.to(torch.float32).ceil().to(qh.dtype)).any()
                or (qw.ceil() != qw.to(torch.float32).ceil().to(qw.dtype)).any()):
            return None
    try:
        ops = torch.ops.torchvision
        ops.roi_align.default  # noqa: B018
        return ops
    except Exception:
        return None


def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width,
                      spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_forward``: fills ``output`` (and the argmax tensors in max mode)."""
    _check(input, rois, pool_mode)
    ph, pw, sr, mode = int(aligned_height), int(aligned_width), int(sampling_ratio), int(pool_mode)
    scale = _f32(spatial_scale)
    C = input.shape[1]
    R = rois.shape[0]
    if R == 0:
        return
    rois = rois.detach().to(input.dtype)
    x = input.detach()
    geo = _Rois(rois, ph, pw, scale, sr, bool(aligned))
    if mode == 1:
        tv = _tv_roi_align(x, geo, sr)
        if tv is not None:
            output.copy_(tv.roi_align(x.contiguous(), rois.contiguous(), scale, ph, pw, sr,
                                      bool(aligned)))
            return
    floor_val = -torch.finfo(torch.float32).max if x.device.type == "cuda" else -10000.0
    res, ay, ax = roi_align_torch.forward(x, geo, mode, floor_val)
    output.copy_(res.view(R, ph, pw, C).permute(0, 3, 1, 2))
    if mode == 0:
        argmax_y.copy_(ay.view(R, ph, pw, C).permute(0, 3, 1, 2))
        argmax_x.copy_(ax.view(R, ph, pw, C).permute(0, 3, 1, 2))


def _channels_last_rows(t, dt):
    """[R, C, ph, pw] -> contiguous [R*ph*pw, C] in dtype dt."""
    return t.detach().to(dt).permute(0, 2, 3, 1).contiguous().view(-1, t.shape[1])


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height,
                       aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_backward``: accumulates into ``grad_input``."""
    _check(grad_input, rois, pool_mode)
    ph, pw, sr, mode = int(aligned_height), int(aligned_width), int(sampling_ratio), int(pool_mode)
    scale = _f32(spatial_scale)
    B, C, H, W = grad_input.shape
    R = rois.shape[0]
    if R == 0:
        return
    dt = grad_input.dtype
    rois = rois.detach().to(dt)
    geo = _Rois(rois, ph, pw, scale, sr, bool(aligned))
    if mode == 1:
        tv = _tv_roi_align(grad_input, geo, sr)
        if tv is not None:
            gi = tv._roi_align_backward(grad_output.detach().to(dt).contiguous(), rois.contiguous(), scale,
                                        ph, pw, B, C, H, W, sr, bool(aligned))
            grad_input.add_(gi)
            return
    acc = torch.zeros((B * H * W, C), dtype=dt, device=grad_input.device)
    g = _channels_last_rows(grad_output, dt)
    if mode == 1:
        mean_samples = int((geo.gh * geo.gw).float().mean().ceil())
        roi_align_torch.backward_avg(
            acc, g, lambda r0, r1: _Rois(rois[r0:r1], ph, pw, scale, sr, bool(aligned)), R, ph * pw, H, W,
            mean_samples)
    else:
        roi_align_torch.backward_max(acc, g, _channels_last_rows(argmax_y, dt), _channels_last_rows(argmax_x, dt),
                                     geo.batch, ph * pw, H, W)
    grad_input.add_(acc.view(B, H, W, C).permute(0, 3, 1, 2))
