"""masked_im2col_forward / masked_col2im_forward: mmcv's MaskedConv2d protocol on the stand-in
equals an ordinary convolution times (mask > 0), and the columns equal the kernel's loops."""

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext


def masked_conv(x, mask, weight, bias, pad):
    """What mmcv's MaskedConv2dFunction does around the two kernels (batch 1, stride 1)."""
    cout, cin, kh, kw = weight.shape
    oh = x.shape[2] + 2 * pad - kh + 1
    ow = x.shape[3] + 2 * pad - kw + 1
    inds = torch.nonzero(mask[0] > 0, as_tuple=False)
    out = x.new_zeros(1, cout, oh, ow)
    if inds.numel():
        h, w = inds[:, 0].contiguous(), inds[:, 1].contiguous()
        col = x.new_zeros(cin * kh * kw, inds.shape[0])
        ext.masked_im2col_forward(x, h, w, col, kernel_h=kh, kernel_w=kw, pad_h=pad, pad_w=pad)
        res = torch.addmm(bias[:, None], weight.view(cout, -1), col)
        ext.masked_col2im_forward(res, h, w, out, height=oh, width=ow, channels=cout)
    return out


@pytest.mark.parametrize("k,pad", [(3, 1), (1, 0), (5, 2), (3, 0)])
def test_equals_conv_times_mask(k, pad):
    g = torch.Generator().manual_seed(k + pad)
    x = torch.randn(1, 4, 9, 11, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 4, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    oh, ow = 9 + 2 * pad - k + 1, 11 + 2 * pad - k + 1
    mask = (torch.rand(1, oh, ow, generator=g) > 0.6).double()
    got = masked_conv(x, mask, weight, bias, pad)
    want = F.conv2d(x, weight, bias, padding=pad) * (mask[:, None] > 0)
    assert (got - want).abs().max().item() <= 1e-12
    assert torch.equal(masked_conv(x, torch.zeros_like(mask), weight, bias, pad),
                       torch.zeros_like(want))


def test_columns_equal_the_kernel_loops():
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).view(1, 2, 4, 5)
    h, w = torch.tensor([0, 3, 2]), torch.tensor([0, 4, 1])
    col = torch.full((2 * 9, 3), -1.0)
    ext.masked_im2col_forward(x, h, w, col, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                for m in range(3):
                    y, xx = int(h[m]) - 1 + i, int(w[m]) - 1 + j
                    want = x[0, c, y, xx].item() if 0 <= y < 4 and 0 <= xx < 5 else 0.0
                    assert col[(c * 3 + i) * 3 + j, m].item() == want
