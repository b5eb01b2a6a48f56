"""bias_act of the mmcv._ext stand-in (mmcv 2.x, StyleGAN3): every activation's forward
against an independent float64 reference built from torch's own functions (mmcv's reference
path), mmcv's backward protocol (grad 1 / grad 2 kernels) under gradcheck and gradgradcheck
and against autograd of the reference, mmcv's test expectations (dim, gain, clamp), layout,
float16, and mmcv's argument errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext

# name -> (kernel index, default alpha, default gain, reference, mmcv's 'ref' and 2nd-grad flags)
ACTS = {
    "linear": (1, 0.0, 1.0, lambda x, a: x, "", False),
    "relu": (2, 0.0, math.sqrt(2), lambda x, a: F.relu(x), "y", False),
    "lrelu": (3, 0.2, math.sqrt(2), lambda x, a: F.leaky_relu(x, a), "y", False),
    "tanh": (4, 0.0, 1.0, lambda x, a: torch.tanh(x), "y", True),
    "sigmoid": (5, 0.0, 1.0, lambda x, a: torch.sigmoid(x), "y", True),
    "elu": (6, 0.0, 1.0, lambda x, a: F.elu(x), "y", True),
    "selu": (7, 0.0, 1.0, lambda x, a: F.selu(x), "y", True),
    "softplus": (8, 0.0, 1.0, lambda x, a: F.softplus(x), "y", True),
    "swish": (9, 0.0, math.sqrt(2), lambda x, a: torch.sigmoid(x) * x, "x", True),
}


def _f32(v):
    return float(torch.tensor(float(v), dtype=torch.float32))


def reference(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    y = ACTS[act][3](x, alpha) * gain
    return y.clamp(-clamp, clamp) if clamp >= 0 else y


def _e(t):
    return t.new_empty(0)


def _call(x, b, xref, yref, dy, grad, dim, act, alpha, gain, clamp):
    return ext.bias_act(x, b if b is not None else _e(x), xref, yref, dy, grad, dim,
                        ACTS[act][0], alpha, gain, clamp)


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("dim,clamp", [(1, -1.0), (0, 0.75), (2, -1.0)])
def test_forward_equals_reference(act, dim, clamp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64) * 3
    b = torch.randn(x.shape[dim], generator=g, dtype=torch.float64)
    alpha, gain = _f32(ACTS[act][1] or 0.1), _f32(ACTS[act][2])
    got = _call(x, b, _e(x), _e(x), _e(x), 0, dim, act, alpha, gain, clamp)
    want = reference(x, b, dim, act, alpha, gain, _f32(clamp))
    assert (got - want).abs().max().item() <= 1e-12
    got32 = _call(x.float(), b.float(), _e(x.float()), _e(x.float()), _e(x.float()), 0, dim,
                  act, alpha, gain, clamp)
    assert (got32.double() - want).abs().max().item() <= 1e-5 * (1 + want.abs().max().item())


def _bias_act_fn(act, dim, alpha, gain, clamp):
    """mmcv 2.x's BiasActCuda / BiasActCudaGrad protocol on the stand-in (facts of its
    Python: grad 1 gets xref = x (with bias added by the kernel) and yref = y; grad 2 also
    dy; the bias gradient is the sum of dx over the other dims)."""
    _, _, _, _, ref, second = ACTS[act]

    class Grad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dy, x, b, y):
            ctx.save_for_backward(dy if second else _e(x), x, b, y)
            return _call(dy, b, x, y, _e(x), 1, dim, act, alpha, gain, clamp)

        @staticmethod
        def backward(ctx, d_dx):
            dy, x, b, y = ctx.saved_tensors
            d_dy = Grad.apply(d_dx, x, b, y) if ctx.needs_input_grad[0] else None
            d_x = d_b = None
            if second and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = _call(d_dx, b, x, y, dy, 2, dim, act, alpha, gain, clamp)
            if second and ctx.needs_input_grad[2]:
                d_b = d_x.sum([i for i in range(d_x.ndim) if i != dim])
            return d_dy, d_x, d_b, None

    class Fwd(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            y = _call(x, b, _e(x), _e(x), _e(x), 0, dim, act, alpha, gain, clamp)
            keep_x = "x" in ref or second
            ctx.save_for_backward(x if keep_x else _e(x), b if keep_x else _e(x),
                                  y if "y" in ref else _e(x))
            return y

        @staticmethod
        def backward(ctx, dy):
            x, b, y = ctx.saved_tensors
            dx = dy
            if act != "linear" or gain != 1 or clamp >= 0:
                dx = Grad.apply(dy, x, b, y)
            db = dx.sum([i for i in range(dx.ndim) if i != dim])
            return dx, db

    return Fwd.apply


@pytest.mark.parametrize("act", sorted(ACTS))
def test_mmcv_protocol_gradients(act):
    g = torch.Generator().manual_seed(1)
    clamp = 1.5 if act in ("lrelu", "tanh") else -1.0
    alpha, gain = _f32(ACTS[act][1]), _f32(ACTS[act][2])
    x = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = _bias_act_fn(act, 1, alpha, gain, clamp)
    dy = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    gx, gb = torch.autograd.grad(fn(x, b), (x, b), dy)
    rx, rb = torch.autograd.grad(reference(x, b, 1, act, alpha, gain, clamp), (x, b), dy)
    assert (gx - rx).abs().max().item() <= 1e-10 and (gb - rb).abs().max().item() <= 1e-10
    # away from the kinks (|x + b| > 0.05 and |y| not near the clamp) for finite differences
    with torch.no_grad():
        xs = x.clone()
        pre = xs + b.view(1, 3, 1)
        xs += torch.where(pre.abs() < 0.05, 0.2, 0.0)
        if clamp >= 0:
            y = reference(xs, b, 1, act, alpha, gain, -1)
            xs += torch.where((y.abs() - clamp).abs() < 0.05, 0.2, 0.0)
    xs.requires_grad_()
    assert torch.autograd.gradcheck(fn, (xs, b), eps=1e-6, atol=1e-8)
    if ACTS[act][5]:  # mmcv: has_2nd_grad
        assert torch.autograd.gradgradcheck(fn, (xs, b), eps=1e-6, atol=1e-7)


def test_mmcv_test_expectations():
    # mmcv tests/test_ops/test_bias_act.py: dim=2 keeps the shape, gain is linear, clamp bounds
    x = torch.randn(1, 3)
    b = torch.randn(3)
    x3 = torch.randn(1, 1, 3)
    assert _call(x3, b, _e(x), _e(x), _e(x), 0, 2, "linear", 0.0, 1.0, -1).shape == (1, 1, 3)
    out1 = _call(x, b, _e(x), _e(x), _e(x), 0, 1, "lrelu", 0.2, 0.2, -1)
    out2 = _call(x, b, _e(x), _e(x), _e(x), 0, 1, "lrelu", 0.2, 0.1, -1)
    assert torch.allclose(out1, out2 * 2)
    big = torch.randn(4, 3) * 10
    assert _call(big, b, _e(x), _e(x), _e(x), 0, 1, "lrelu", 0.2, 1.4, 0.5).abs().max() <= 0.5


def test_saturation_and_kernel_formulas():
    # the kernel's own formulas: tanh/sigmoid/swish saturate beyond |x| > 80, softplus is x
    x = torch.tensor([-100.0, -81.0, 81.0, 100.0, 0.0], dtype=torch.float64)
    tanh = _call(x, None, _e(x), _e(x), _e(x), 0, 1, "tanh", 0, 1, -1)
    assert tanh.tolist() == [-1.0, -1.0, 1.0, 1.0, 0.0]
    assert _call(x, None, _e(x), _e(x), _e(x), 0, 1, "sigmoid", 0, 1, -1)[:2].tolist() == [0, 0]
    assert _call(x, None, _e(x), _e(x), _e(x), 0, 1, "softplus", 0, 1, -1)[2:4].tolist() == [
        81.0, 100.0]
    # grad 1 of lrelu reads the sign of yref / gain; swish's grad 2 formula also for grad 3
    dy = torch.ones(5, dtype=torch.float64)
    yref = torch.tensor([-1.0, 1.0, -1.0, 1.0, 0.0], dtype=torch.float64)
    g1 = _call(dy, None, _e(x), yref, _e(x), 1, 1, "lrelu", 0.25, 2.0, -1)
    assert g1.tolist() == [0.5, 2.0, 0.5, 2.0, 0.5]
    xr = torch.linspace(-3, 3, 5, dtype=torch.float64)
    assert torch.equal(_call(dy, None, xr, _e(x), dy, 2, 1, "swish", 0, 1, -1),
                       _call(dy, None, xr, _e(x), dy, 3, 1, "swish", 0, 1, -1))
    assert not _call(dy, None, xr, yref, dy, 3, 1, "tanh", 0, 1, -1).any()


def test_layout_half_and_errors():
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    b = torch.randn(3)
    y = _call(x, b, _e(x), _e(x), _e(x), 0, 1, "lrelu", 0.2, 1.0, -1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, _call(x.contiguous(), b, _e(x), _e(x), _e(x), 0, 1, "lrelu", 0.2,
                                1.0, -1))
    h = _call(x.half(), b.half(), _e(x.half()), _e(x.half()), _e(x.half()), 0, 1, "elu", 0,
              1.0, -1)
    want = _call(x.half().float(), b.half().float(), _e(x), _e(x), _e(x), 0, 1, "elu", 0, 1.0,
                 -1)
    assert h.dtype == torch.float16 and torch.equal(h, want.half())
    with pytest.raises(RuntimeError, match="wrong number of elements"):
        _call(x, torch.randn(4), _e(x), _e(x), _e(x), 0, 1, "relu", 0, 1, -1)
    with pytest.raises(RuntimeError, match="same dtype"):
        _call(x, b.double(), _e(x), _e(x), _e(x), 0, 1, "relu", 0, 1, -1)
    with pytest.raises(RuntimeError, match="activation"):
        ext.bias_act(x, b, _e(x), _e(x), _e(x), 0, 1, 12, 0.0, 1.0, -1.0)
