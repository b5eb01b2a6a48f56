"""fused_bias_leakyrelu of the mmcv._ext stand-in: every (act, grad) code against its formula,
and mmcv's FusedBiasLeakyReLUFunction protocol (forward, backward, double backward) under
gradcheck/gradgradcheck like mmcv's own test."""

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_codes(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=g).to(dtype)
    b = torch.randn(3, generator=g).to(dtype)
    ref = torch.randn(2, 3, 4, 5, generator=g).to(dtype)
    e = x.new_empty(0)
    xb = x + b.view(1, 3, 1, 1)
    s, a = 2 ** 0.5, 0.2
    sf, af = float(torch.tensor(s, dtype=torch.float32)), float(torch.tensor(a, dtype=torch.float32))
    assert torch.equal(ext.fused_bias_leakyrelu(x, b, e, act=3, grad=0, alpha=a, scale=s),
                       torch.where(xb > 0, xb, xb * af) * sf)
    assert torch.equal(ext.fused_bias_leakyrelu(x, e, ref, act=3, grad=1, alpha=a, scale=s),
                       torch.where(ref > 0, x, x * af) * sf)
    assert torch.equal(ext.fused_bias_leakyrelu(x, b, ref, 3, 2, a, s), torch.zeros_like(x))
    assert torch.equal(ext.fused_bias_leakyrelu(x, b, e, 1, 0, a, s), xb * sf)
    assert torch.equal(ext.fused_bias_leakyrelu(x, b, e, 1, 2, a, s), torch.zeros_like(x))
    assert torch.equal(ext.fused_bias_leakyrelu(x, e, e, 7, 0, a, s), x * sf)  # default: linear


class _Back(torch.autograd.Function):
    """mmcv's backward Function, on the stand-in (grad=1 with the forward output as refer)."""

    @staticmethod
    def forward(ctx, grad_output, out, slope, scale):
        ctx.save_for_backward(out)
        ctx.slope, ctx.scale = slope, scale
        e = grad_output.new_empty(0)
        gi = ext.fused_bias_leakyrelu(grad_output, e, out, act=3, grad=1, alpha=slope, scale=scale)
        dim = [0] + list(range(2, grad_output.ndim))
        return gi, gi.sum(dim).detach()

    @staticmethod
    def backward(ctx, gg_input, gg_bias):
        (out,) = ctx.saved_tensors
        ggo = ext.fused_bias_leakyrelu(gg_input, gg_bias.to(out.dtype), out, act=3, grad=1,
                                       alpha=ctx.slope, scale=ctx.scale)
        return ggo, None, None, None


class _Fwd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, slope, scale):
        out = ext.fused_bias_leakyrelu(x, bias, x.new_empty(0), act=3, grad=0, alpha=slope,
                                       scale=scale)
        ctx.save_for_backward(out)
        ctx.slope, ctx.scale = slope, scale
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        gi, gb = _Back.apply(grad_output, out, ctx.slope, ctx.scale)
        return gi, gb, None, None


def test_mmcv_protocol_gradcheck_and_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    out = _Fwd.apply(x, b, 0.2, 2 ** 0.5)
    ref = F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * 2 ** 0.5
    assert (out - ref).abs().max().item() <= 1e-6  # alpha, scale are float32 in the kernel
    assert torch.autograd.gradcheck(lambda t: _Fwd.apply(t, b, 0.2, 2 ** 0.5), (x,), eps=1e-4,
                                    atol=1e-3)
    assert torch.autograd.gradgradcheck(lambda t: _Fwd.apply(t, b, 0.2, 2 ** 0.5), (x,),
                                        eps=1e-4, atol=1e-3)
