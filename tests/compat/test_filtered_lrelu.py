"""filtered_lrelu and filtered_lrelu_act_ of the mmcv._ext stand-in (mmcv 2.x, StyleGAN3):
the forward against an independent float64 reference (mmcv's own definition: bias, upsample
with gain up**2, gain + leaky ReLU + clamp, downsample), mmcv's test expectations (shapes,
gain, clamp, flip), the sign tensor's format, and mmcv's backward protocol (the same kernel
with up/down swapped, reading the forward's signs at mmcv's offsets) against autograd of the
reference; filtered_lrelu_act_ in place, its signs read back through offsets."""

import math

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext

E8 = torch.empty(0, dtype=torch.uint8)


def _up_fir_dn(x, f, up, down, pad, flip, gain):
    """Zero-insert by ``up``, pad (negative crops), convolve with f (correlate if flip),
    keep every ``down``-th pixel, times gain -- from scipy's upfirdn definition."""
    n, c, h, w = x.shape
    if f.dim() == 1:
        f = f[:, None] * f[None, :]
    z = x.new_zeros(n, c, h * up, w * up)
    z[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    z = F.pad(z, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0):z.shape[2] - max(-py1, 0), max(-px0, 0):z.shape[3] - max(-px1, 0)]
    k = f.to(x.dtype) if flip else f.to(x.dtype).flip([0, 1])
    k = k[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(z, k, groups=c)[:, :, ::down, ::down] * gain


def reference(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip):
    t = x + b.view(1, -1, 1, 1)
    t = _up_fir_dn(t, fu, up, 1, pad, flip, up * up)
    t = F.leaky_relu(t * gain, slope)
    if clamp is not None:
        t = t.clamp(-clamp, clamp)
    return _up_fir_dn(t, fd, 1, down, (0, 0, 0, 0), flip, 1)


def _call(x, fu, fd, b, up, down, pad, gain=math.sqrt(2), slope=0.2, clamp=None, flip=False,
          write=False, si=E8, sx=0, sy=0):
    c = float("inf") if clamp is None else clamp
    return ext.filtered_lrelu(x, fu, fd, b, si, up, down, *pad, sx, sy, gain, slope, c, flip,
                              write)


CASES = [  # up, down, padding, fu, fd shapes -- mmcv's test's combinations and StyleGAN3's
    (1, 1, (0, 0, 0, 0), (1, 1), (1, 1)),
    (2, 2, (1, 1, 1, 1), (2, 2), (2, 2)),
    (2, 2, (2, 2, 2, 2), (4, 4), (2, 2)),
    (4, 2, (1, 1, 1, 1), (2, 2), (2, 2)),
    (2, 4, (1, 1, 1, 1), (2, 2), (4, 4)),
    (2, 2, (5, 4, 5, 4), (12,), (12,)),  # separable, StyleGAN3-like
]


@pytest.mark.parametrize("up,down,pad,fus,fds", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_forward_equals_reference(up, down, pad, fus, fds, flip):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 8, generator=g)
    b = torch.randn(3, generator=g)
    fu, fd = torch.randn(*fus, generator=g), torch.randn(*fds, generator=g)
    y, so, rc = _call(x, fu, fd, b, up, down, pad, clamp=0.9, flip=flip)
    want = reference(x.double(), fu.double(), fd.double(), b.double(), up, down, pad,
                     float(torch.tensor(math.sqrt(2), dtype=torch.float32)), 0.2, 0.9, flip)
    assert rc == 0 and so is None and y.dtype == torch.float32 and y.shape == want.shape
    assert (y.double() - want).abs().max().item() <= 1e-5 * (1 + want.abs().max().item())


def test_mmcv_test_expectations():
    # mmcv tests/test_ops/test_filtered_lrelu.py: output shapes, gain linear, clamp, flip
    x, b = torch.randn(1, 3, 16, 16), torch.randn(3)
    one = torch.ones(1, 1)
    f2a, f2b, f4 = torch.randn(2, 2), torch.randn(2, 2), torch.randn(4, 4)
    assert _call(x, one, one, b, 1, 1, (0,) * 4)[0].shape == (1, 3, 16, 16)
    assert _call(x, f2a, f2b, b, 2, 2, (1,) * 4, clamp=0.5)[0].shape == (1, 3, 16, 16)
    assert _call(x, f4, f2b, b, 2, 2, (2,) * 4, clamp=0.5)[0].shape == (1, 3, 16, 16)
    assert _call(x, f2a, f4, b, 2, 2, (2,) * 4, clamp=0.5)[0].shape == (1, 3, 16, 16)
    assert _call(x, f2a, f2b, b, 4, 2, (1,) * 4, clamp=0.5)[0].shape == (1, 3, 32, 32)
    assert _call(x, f2a, f2b, b, 2, 4, (1,) * 4, clamp=0.5)[0].shape == (1, 3, 8, 8)
    out1 = _call(x, one, one, b, 1, 1, (0,) * 4, gain=0.2)[0]
    out2 = _call(x, one, one, b, 1, 1, (0,) * 4, gain=0.1)[0]
    assert torch.allclose(out1, 2 * out2)
    assert _call(x, one, one, b, 1, 1, (0,) * 4, clamp=0.2)[0].max() <= 0.2
    assert _call(x, one, one, b, 1, 1, (0,) * 4, clamp=0.1)[0].max() <= 0.1
    assert _call(x, one, one, b, 1, 1, (0,) * 4, flip=True)[0].shape == (1, 3, 16, 16)


def _decode(so):
    s = so.to(torch.int32)
    return torch.stack([(s >> k) & 3 for k in (0, 2, 4, 6)], -1).flatten(3)


def test_sign_tensor_format():
    g = torch.Generator().manual_seed(1)
    x, b = torch.randn(1, 2, 7, 6, generator=g), torch.randn(2, generator=g)
    fu, fd = torch.randn(4, 4, generator=g), torch.randn(2, 2, generator=g)
    up, down, pad = 2, 2, (2, 1, 2, 1)
    y, so, _ = _call(x, fu, fd, b, up, down, pad, gain=1.0, clamp=1.0, write=True)
    yh, yw = y.shape[2:]
    sh, sw = yh * down - (down - 1) + 1, yw * down - (down - 1) + 1
    assert so.dtype == torch.uint8 and so.shape == (1, 2, sh, ((sw + 15) & ~15) // 4)
    # the buffer before the activation, from the reference's first half
    buf = _up_fir_dn(x.double() + b.double().view(1, -1, 1, 1), fu.double(), up, 1, pad, False,
                     up * up)
    act = torch.where(buf < 0, buf * 0.2, buf)  # gain 1, then the slope, then the clamp test
    want = torch.where(act.abs() > 1.0, 2, (buf < 0).to(torch.int64))
    codes = _decode(so)
    assert torch.equal(codes[..., :sh, :sw].long(), want[..., :sh, :sw])
    assert not codes[..., sw:].any()  # the rounding-up columns stay 0


class _FLReLU(torch.autograd.Function):
    """mmcv 2.x's FilteredLReluCuda protocol on the stand-in (facts of its Python): signs
    written in the forward; backward = the op on dy with up/down and the filters swapped,
    padding pp, gain gain*up^2/down^2, flip inverted, no clamp, the signs at offsets
    (sx - (fu_w - 1) + px0, sy - (fu_h - 1) + py0)."""

    @staticmethod
    def forward(ctx, x, fu, fd, b, si, sx, sy, cfg):
        up, down, pad, gain, slope, clamp, flip = cfg
        write = si.numel() == 0 and (x.requires_grad or b.requires_grad)
        y, so, rc = _call(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip, write, si,
                          sx, sy)
        assert rc == 0
        ctx.save_for_backward(fu, fd, si if si.numel() else so)
        ctx.shapes = (x.shape, y.shape, sx, sy, cfg)
        return y

    @staticmethod
    def backward(ctx, dy):
        fu, fd, si = ctx.saved_tensors
        (_, _, xh, xw), (_, _, yh, yw), sx, sy, cfg = ctx.shapes
        up, down, (px0, px1, py0, py1), gain, slope, clamp, flip = cfg
        pp = ((fu.shape[-1] - 1) + (fd.shape[-1] - 1) - px0, xw * up - yw * down + px0 - (up - 1),
              (fu.shape[0] - 1) + (fd.shape[0] - 1) - py0, xh * up - yh * down + py0 - (up - 1))
        gg = gain * (up ** 2) / (down ** 2)
        bcfg = (down, up, pp, gg, slope, None, not flip)
        dx = _FLReLU.apply(dy, fd, fu, torch.zeros(dy.shape[1], dtype=dy.dtype), si,
                           sx - (fu.shape[-1] - 1) + px0, sy - (fu.shape[0] - 1) + py0, bcfg)
        return dx, None, None, dx.sum([0, 2, 3]), None, None, None, None


@pytest.mark.parametrize("up,down,pad,fus,fds", CASES[1:])
def test_mmcv_backward_protocol_equals_reference_gradient(up, down, pad, fus, fds):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 9, 8, generator=g, requires_grad=True)
    b = torch.randn(2, generator=g, requires_grad=True)
    fu, fd = torch.randn(*fus, generator=g), torch.randn(*fds, generator=g)
    cfg = (up, down, pad, 1.5, 0.25, 0.8, False)
    y = _FLReLU.apply(x, fu, fd, b, E8, 0, 0, cfg)
    dy = torch.randn(y.shape, generator=g)
    gx, gb = torch.autograd.grad(y, (x, b), dy)
    xd, bd = x.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    yr = reference(xd, fu.double(), fd.double(), bd, up, down, pad, 1.5, 0.25, 0.8, False)
    rx, rb = torch.autograd.grad(yr, (xd, bd), dy.double())
    assert (y.double() - yr).abs().max().item() <= 1e-5 * (1 + yr.abs().max().item())
    assert (gx.double() - rx).abs().max().item() <= 1e-5 * (1 + rx.abs().max().item())
    assert (gb.double() - rb).abs().max().item() <= 1e-5 * (1 + rb.abs().max().item())


def test_act_in_place_signs_and_offsets():
    # slope and gain are C floats: 0.25 and 1.5 are exact, so float64 results are exact
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64) * 2
    v = x.clone()
    so = ext.filtered_lrelu_act_(v, E8, 0, 0, 1.5, 0.25, 2.0, True)
    want = F.leaky_relu(x * 1.5, 0.25).clamp(-2.0, 2.0)
    assert (v - want).abs().max().item() <= 1e-15  # in place
    assert so.shape == (2, 3, 5, 4)  # width 7 rounded up to 16, four per byte
    codes = _decode(so)[..., :7]
    assert torch.equal(codes.long(), torch.where((x * 1.5 * torch.where(x < 0, 0.25, 1.0)).abs()
                                                 > 2.0, 2, (x < 0).long()))
    # reading: the gradient gets slope where the forward was negative, 0 where clamped, and
    # only the gain outside the sign buffer (positions shifted by sx, sy)
    dy = torch.ones(2, 3, 5, 7, dtype=torch.float64)
    assert ext.filtered_lrelu_act_(dy, so, 1, -1, 2.0, 0.25, float("inf"), False) is None
    c = codes.long()
    inside = torch.zeros(5, 7, dtype=torch.bool)
    inside[1:, :6] = True
    shifted = torch.zeros(2, 3, 5, 7, dtype=torch.long)
    shifted[:, :, 1:, :6] = c[:, :, :4, 1:7]
    expect = torch.where(inside, torch.where(shifted == 2, 0.0, torch.where(shifted == 1, 0.5,
                                                                           2.0)), 2.0)
    assert torch.equal(dy, expect)
    # float32 and no signs: gain, lrelu, clamp
    v32 = x.float()
    assert ext.filtered_lrelu_act_(v32, E8, 0, 0, 1.5, 0.25, 2.0, False) is None
    assert (v32.double() - want).abs().max().item() <= 1e-6


def test_errors_like_mmcv():
    x, b, f = torch.randn(1, 2, 6, 6), torch.randn(2), torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="float16 or float32"):
        _call(x.double(), f, f, b.double(), 2, 2, (1,) * 4)
    with pytest.raises(RuntimeError, match="fu and fd must be float32"):
        _call(x, f.double(), f, b, 2, 2, (1,) * 4)
    with pytest.raises(RuntimeError, match="same number of"):
        _call(x, f, f, torch.randn(3), 2, 2, (1,) * 4)
    with pytest.raises(RuntimeError, match="at least the size"):
        _call(x, torch.ones(3, 3), torch.ones(9, 9), b, 1, 1, (0,) * 4)
