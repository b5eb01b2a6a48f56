"""psamask_forward/backward of the mmcv._ext stand-in against the kernel's loops, written out."""

import pytest
import torch

from envdoctor.compat import ext


def loops(psa_type, inp, H, W, hm, wm):
    """The kernel's four nested loops over Python lists (collect 0, distribute 1)."""
    N = inp.shape[0]
    hh, hw = (hm - 1) // 2, (wm - 1) // 2
    m = inp.reshape(N, -1).tolist()
    out = [[0.0] * (H * W * H * W) for _ in range(N)]
    for n in range(N):
        for h in range(H):
            for w in range(W):
                for hidx in range(max(0, hh - h), min(hm, H + hh - h)):
                    for widx in range(max(0, hw - w), min(wm, W + hw - w)):
                        shifted = (hidx + h - hh) * W + (widx + w - hw)
                        here = h * W + w
                        d = shifted * H * W + here if psa_type == 0 else here * H * W + shifted
                        out[n][d] = m[n][((hidx * wm + widx) * H + h) * W + w]
    return torch.tensor(out, dtype=inp.dtype).view(N, H * W, H, W)


@pytest.mark.parametrize("psa_type", [0, 1])
@pytest.mark.parametrize("size", [(4, 5, 7, 9), (3, 3, 5, 5), (6, 4, 3, 3)])
def test_forward_and_backward_equal_the_loops(psa_type, size):
    H, W, hm, wm = size
    g = torch.Generator().manual_seed(0)
    inp = torch.randn(2, hm * wm, H, W, generator=g, dtype=torch.float64)
    kw = dict(psa_type=psa_type, num_=2, h_feature=H, w_feature=W, h_mask=hm, w_mask=wm,
              half_h_mask=(hm - 1) // 2, half_w_mask=(wm - 1) // 2)
    out = inp.new_zeros((2, H * W, H, W))
    ext.psamask_forward(inp, out, **kw)
    assert torch.equal(out, loops(psa_type, inp, H, W, hm, wm))
    # backward: the adjoint of the copy (gradcheck of the pair)
    x = inp.clone().requires_grad_(True)

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            o = x.new_zeros((2, H * W, H, W))
            ext.psamask_forward(x.detach(), o, **kw)
            return o

        @staticmethod
        def backward(ctx, go):
            gi = go.new_zeros((2, hm * wm, H, W))
            ext.psamask_backward(go.contiguous(), gi, **kw)
            return gi

    assert torch.autograd.gradcheck(F.apply, (x,))
