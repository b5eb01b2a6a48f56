"""mmcv's ``masked_im2col_forward`` / ``masked_col2im_forward`` kernels, exact, in PyTorch.

mmcv has them on CUDA only (common/cuda/masked_conv2d_cuda_kernel.cuh); its
``MaskedConv2dFunction`` (batch 1, stride 1, ``mask[0]``) gathers columns at the masked
positions, multiplies by the weight and scatters the result back.  Served on every device:

* ``masked_im2col_forward(im, mask_h_idx, mask_w_idx, col, kernel_h, kernel_w, pad_h, pad_w)``:
  ``col[(c*kh + i)*kw + j, m] = im[0, c, h_m - pad_h + i, w_m - pad_w + j]``, 0 outside;
* ``masked_col2im_forward(col, mask_h_idx, mask_w_idx, im, height, width, channels)``:
  ``im[0, c, h_m, w_m] = col[c, m]``; other positions keep what the caller passed (zeros).
"""

import torch

__all__ = ["masked_im2col_forward", "masked_col2im_forward"]


def masked_im2col_forward(im, mask_h_idx, mask_w_idx, col, kernel_h, kernel_w, pad_h, pad_w):
    """Fills ``col`` [C*kh*kw, mask_cnt] from the image at the masked positions."""
    kh, kw, ph, pw = int(kernel_h), int(kernel_w), int(pad_h), int(pad_w)
    x = im.detach()[0]
    C, H, W = x.shape
    m = mask_h_idx.shape[0]
    if m == 0:
        return
    xp = torch.nn.functional.pad(x, (pw + kw, pw + kw, ph + kh, ph + kh))
    # row/col in the padded image of tap (i, j) at mask position m
    i = torch.arange(kh, device=x.device).view(kh, 1, 1)
    j = torch.arange(kw, device=x.device).view(1, kw, 1)
    hh = mask_h_idx.to(x.device).view(1, 1, m) - ph + i + (ph + kh)
    ww = mask_w_idx.to(x.device).view(1, 1, m) - pw + j + (pw + kw)
    flat = (hh * xp.shape[2] + ww).reshape(-1)  # [kh*kw*m]
    vals = xp.reshape(C, -1).index_select(1, flat)  # [C, kh*kw*m]
    col.copy_(vals.view(C * kh * kw, m).to(col.dtype))


def masked_col2im_forward(col, mask_h_idx, mask_w_idx, im, height, width, channels):
    """Writes ``col`` [channels, mask_cnt] into ``im`` at the masked positions."""
    m = mask_h_idx.shape[0]
    if m == 0:
        return
    pos = (mask_h_idx.to(im.device) * int(width) + mask_w_idx.to(im.device)).view(-1)
    im.view(int(channels), -1)[:, pos] = col.detach().reshape(int(channels), m).to(im.dtype)
