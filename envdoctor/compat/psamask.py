"""mmcv's ``psamask_forward`` / ``psamask_backward`` kernels (PSANet), exact, in PyTorch.

A pure re-indexing (csrc/pytorch/cpu/psamask.cpp; CUDA the same): for every feature position
(h, w) and mask position (hidx, widx) whose shifted position ``(hidx + h - half_h,
widx + w - half_w)`` lies inside the feature map, ``psa_type`` 0 (collect) copies
``input[n, hidx*w_mask + widx, h, w]`` to ``output[n, shifted, h*W + w]`` and 1 (distribute)
to ``output[n, h*W + w, shifted]``; positions never written keep what the caller put there
(mmcv's wrapper passes zeros).  The backward reads the same positions back into
``grad_input``.
"""

import torch

__all__ = ["psamask_forward", "psamask_backward"]

_INDEX: dict = {}


def _index(psa_type, H, W, hm, wm, hh, hw, device):
    """(source in the mask tensor, destination in the buffer) per image, int64 [K] each."""
    key = (int(psa_type), H, W, hm, wm, hh, hw, str(device))
    if key not in _INDEX:
        hidx = torch.arange(hm, device=device).view(hm, 1, 1, 1)
        widx = torch.arange(wm, device=device).view(1, wm, 1, 1)
        h = torch.arange(H, device=device).view(1, 1, H, 1)
        w = torch.arange(W, device=device).view(1, 1, 1, W)
        sy = hidx + h - hh
        sx = widx + w - hw
        ok = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
        src = ((hidx * wm + widx) * H + h) * W + w
        here = h * W + w
        shifted = sy * W + sx
        if int(psa_type) == 0:
            dst = shifted * (H * W) + here
        else:
            dst = here * (H * W) + shifted
        shape = ok.shape
        _INDEX[key] = (src.expand(shape)[ok], dst.expand(shape)[ok])
        if len(_INDEX) > 32:
            _INDEX.pop(next(iter(_INDEX)))
    return _INDEX[key]


def _check(psa_type, num_, t):
    if int(psa_type) not in (0, 1):
        raise ValueError("psamask: psa_type must be 0 (collect) or 1 (distribute), got %r"
                         % (psa_type,))
    if t.shape[0] != num_:
        raise ValueError("psamask: num_=%d but the tensor has batch %d" % (num_, t.shape[0]))


def psamask_forward(input, output, psa_type, num_, h_feature, w_feature, h_mask, w_mask,
                    half_h_mask, half_w_mask):
    """``mmcv._ext.psamask_forward``: writes the valid positions of ``output``."""
    _check(psa_type, num_, input)
    src, dst = _index(psa_type, h_feature, w_feature, h_mask, w_mask, half_h_mask, half_w_mask,
                      input.device)
    out = output.view(num_, -1)
    out[:, dst] = input.detach().reshape(num_, -1)[:, src].to(output.dtype)


def psamask_backward(grad_output, grad_input, psa_type, num_, h_feature, w_feature, h_mask,
                     w_mask, half_h_mask, half_w_mask):
    """``mmcv._ext.psamask_backward``: writes the valid positions of ``grad_input``."""
    _check(psa_type, num_, grad_output)
    src, dst = _index(psa_type, h_feature, w_feature, h_mask, w_mask, half_h_mask, half_w_mask,
                      grad_output.device)
    gin = grad_input.view(num_, -1)
    gin[:, src] = grad_output.detach().reshape(num_, -1)[:, dst].to(grad_input.dtype)
