"""upfirdn2d of the mmcv._ext stand-in, both bindings (mmcv 1.x: [major, H, W, minor], no gain;
mmcv 2.x: NCHW, flip, gain), against a float64 replay of the CUDA kernel's own index loops,
mmcv's test expectations (shapes, gain), mmcv's backward protocol under gradcheck and
gradgradcheck, float16, and mmcv's argument errors."""

import pytest
import torch

from envdoctor.compat import ext


def _floor_div(a, b):
    return a // b  # Python's // is the kernel's floor_div


def kernel_loops(x, k, up, down, pad):
    """mmcv 1.x's generic CUDA kernel (upfirdn2d_kernel_large) written out: x [major, H, W,
    minor], k [kh, kw]; each output pixel sums input[in_y + y, in_x + x] * k[ky - y*up_y,
    kx - x*up_x] over the taps that land on real (not inserted) input pixels."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    major, h, w, minor = x.shape
    kh, kw = k.shape
    out_h = (h * upy + py0 + py1 - kh + downy) // downy
    out_w = (w * upx + px0 + px1 - kw + downx) // downx
    out = torch.zeros(major, out_h, out_w, minor, dtype=torch.float64)
    xs, ks = x.double(), k.double()
    for oy in range(out_h):
        mid_y = oy * downy + upy - 1 - py0
        in_y = min(max(_floor_div(mid_y, upy), 0), h)
        hh = min(max(_floor_div(mid_y + kh, upy), 0), h) - in_y
        ky = mid_y + kh - (in_y + 1) * upy
        for ox in range(out_w):
            mid_x = ox * downx + upx - 1 - px0
            in_x = min(max(_floor_div(mid_x, upx), 0), w)
            ww = min(max(_floor_div(mid_x + kw, upx), 0), w) - in_x
            kx = mid_x + kw - (in_x + 1) * upx
            v = torch.zeros(major, minor, dtype=torch.float64)
            for yy in range(hh):
                for xx in range(ww):
                    v += xs[:, in_y + yy, in_x + xx, :] * ks[ky - yy * upy, kx - xx * upx]
            out[:, oy, ox, :] = v
    return out


CASES = [  # up, down, pad (x0, x1, y0, y1), filter shape
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4)),   # StyleGAN2 upsample (mmcv's own test)
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4)),   # downsample
    ((1, 1), (1, 1), (1, 1, 1, 1), (3, 3)),   # blur
    ((3, 2), (1, 2), (-1, 2, 0, -1), (3, 4)),  # anisotropic, negative padding crops
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 5)),   # separable pass as mmcv 2.x issues it
]


@pytest.mark.parametrize("up,down,pad,fshape", CASES)
def test_v1_binding_equals_the_kernel_loops(up, down, pad, fshape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 2, generator=g, dtype=torch.float64)  # minor 2: layout matters
    k = torch.randn(*fshape, generator=g, dtype=torch.float64)
    got = ext.upfirdn2d(x, k, up_x=up[0], up_y=up[1], down_x=down[0], down_y=down[1],
                        pad_x0=pad[0], pad_x1=pad[1], pad_y0=pad[2], pad_y1=pad[3])
    want = kernel_loops(x, k, up, down, pad)
    assert got.shape == want.shape and got.dtype == torch.float64
    assert (got - want).abs().max().item() <= 1e-12
    # positional call, float32
    got32 = ext.upfirdn2d(x.float(), k.float(), up[0], up[1], down[0], down[1], *pad)
    assert (got32.double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()


@pytest.mark.parametrize("up,down,pad,fshape", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_v2_binding_flip_and_gain(up, down, pad, fshape, flip):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    f = torch.randn(*fshape, generator=g)  # float32, as mmcv 2.x requires
    got = ext.upfirdn2d(x, f, up[0], up[1], down[0], down[1], *pad, flip, 0.7)
    # flip=True correlates: the 1.x convolution with the mirrored filter
    k = f.double().flip([0, 1]) if flip else f.double()
    want = kernel_loops(x.permute(0, 2, 3, 1), k, up, down, pad).permute(0, 3, 1, 2)
    gain = float(torch.tensor(0.7, dtype=torch.float32))
    assert got.shape == want.shape
    assert (got - want * gain).abs().max().item() <= 1e-12


def test_mmcv_test_expectations_shapes_and_gain():
    # mmcv tests/test_ops/test_upfirdn2d.py (2.x): up=2 padding=1 3x3 -> 8x8; down=2 padding=1
    # on 8x8 -> 4x4; the 4x4 [1,3,3,1] filter without padding on 4x4 -> 1x1; gain is linear
    k1 = torch.tensor([1., 3., 3., 1.])
    k = k1[:, None] * k1[None, :]
    k = k / k.sum()
    x = torch.randn(2, 3, 4, 4)
    assert ext.upfirdn2d(x, torch.randn(3, 3), 2, 2, 1, 1, 1, 1, 1, 1, False, 1.0).shape == (
        2, 3, 8, 8)
    assert ext.upfirdn2d(torch.randn(2, 3, 8, 8), k, 1, 1, 2, 2, 1, 1, 1, 1, False,
                         1.0).shape == (2, 3, 4, 4)
    assert ext.upfirdn2d(x, k, 1, 1, 1, 1, 0, 0, 0, 0, True, 1.0).shape == (2, 3, 1, 1)
    out1 = ext.upfirdn2d(x, k, 1, 1, 1, 1, 0, 0, 0, 0, False, 0.2)
    out2 = ext.upfirdn2d(x, k, 1, 1, 1, 1, 0, 0, 0, 0, False, 0.1)
    assert torch.allclose(out1, out2 * 2)


class _Up2(torch.autograd.Function):
    """mmcv 2.x's Upfirdn2dCuda protocol on the stand-in: backward is the same kernel with up
    and down swapped, flip inverted and the padding mmcv derives (facts of its Python)."""

    @staticmethod
    def forward(ctx, x, f, up, down, pad, flip, gain):
        ctx.save_for_backward(f)
        ctx.cfg = (up, down, pad, flip, gain, x.shape)
        return ext.upfirdn2d(x, f, up[0], up[1], down[0], down[1], *pad, flip, gain)

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        up, down, pad, flip, gain, xs = ctx.cfg
        ih, iw, oh, ow = xs[2], xs[3], dy.shape[2], dy.shape[3]
        fh, fw = f.shape
        p = (fw - pad[0] - 1, iw * up[0] - ow * down[0] + pad[0] - up[0] + 1,
             fh - pad[2] - 1, ih * up[1] - oh * down[1] + pad[2] - up[1] + 1)
        return _Up2.apply(dy, f, down, up, p, not flip, gain), None, None, None, None, None, None


@pytest.mark.parametrize("up,down,pad,fshape", CASES[:4])
def test_v2_protocol_gradcheck(up, down, pad, fshape):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.randn(*fshape, generator=g)
    fn = lambda t: _Up2.apply(t, f, up, down, pad, False, 1.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-9, fast_mode=True)
    if up == (2, 2):  # the double backward (mmcv's own test runs gradgradcheck on this case)
        assert torch.autograd.gradgradcheck(fn, (x,), eps=1e-6, atol=1e-9, fast_mode=True)


class _Up1(torch.autograd.Function):
    """mmcv 1.x's UpFirDn2d protocol: [B*C, H, W, 1] views, the gradient through the kernel
    with the mirrored kernel, up/down swapped and mmcv's g_pad."""

    @staticmethod
    def forward(ctx, x, k, up, down, pad):
        b, c, h, w = x.shape
        kh, kw = k.shape
        out_h = (h * up[1] + pad[2] + pad[3] - kh) // down[1] + 1
        out_w = (w * up[0] + pad[0] + pad[1] - kw) // down[0] + 1
        ctx.save_for_backward(k)
        ctx.cfg = (up, down, pad, x.shape, (out_h, out_w))
        out = ext.upfirdn2d(x.reshape(-1, h, w, 1), k, up_x=up[0], up_y=up[1], down_x=down[0],
                            down_y=down[1], pad_x0=pad[0], pad_x1=pad[1], pad_y0=pad[2],
                            pad_y1=pad[3])
        return out.view(-1, c, out_h, out_w)

    @staticmethod
    def backward(ctx, dy):
        (k,) = ctx.saved_tensors
        up, down, pad, (b, c, h, w), (oh, ow) = ctx.cfg
        kh, kw = k.shape
        gp = (kw - pad[0] - 1, w * up[0] - ow * down[0] + pad[0] - up[0] + 1,
              kh - pad[2] - 1, h * up[1] - oh * down[1] + pad[2] - up[1] + 1)
        gi = ext.upfirdn2d(dy.reshape(-1, oh, ow, 1), k.flip([0, 1]), up_x=down[0],
                           up_y=down[1], down_x=up[0], down_y=up[1], pad_x0=gp[0],
                           pad_x1=gp[1], pad_y0=gp[2], pad_y1=gp[3])
        return gi.view(b, c, h, w), None, None, None, None


def test_v1_protocol_gradcheck_mmcv_case():
    # mmcv 1.x's own test: the [1,3,3,1] kernel, factor 2, pad (2, 1) -> (2, 1, 2, 1)
    k1 = torch.tensor([1., 3., 3., 1.], dtype=torch.float64)
    k = k1[:, None] * k1[None, :]
    k = k / k.sum()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda t: _Up1.apply(t, k, (2, 2), (1, 1), (2, 1, 2, 1))  # noqa: E731
    assert fn(x).shape == (2, 3, 8, 8)
    assert torch.autograd.gradcheck(fn, (x[:1, :1].detach().requires_grad_(),), eps=1e-6,
                                    atol=1e-9)


def test_half_is_computed_in_float32_and_rounded_once():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 7, 6, generator=g)
    f = torch.randn(4, 4, generator=g)
    h = ext.upfirdn2d(x.half(), f, 2, 2, 1, 1, 2, 1, 2, 1, False, 2.0)
    want = ext.upfirdn2d(x.half().float(), f, 2, 2, 1, 1, 2, 1, 2, 1, False, 2.0)
    assert h.dtype == torch.float16
    assert torch.equal(h, want.half())


def test_channels_last_output_and_values():
    x = torch.randn(2, 3, 5, 6).contiguous(memory_format=torch.channels_last)
    f = torch.randn(3, 3)
    y = ext.upfirdn2d(x, f, 1, 1, 1, 1, 1, 1, 1, 1, False, 1.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, ext.upfirdn2d(x.contiguous(), f, 1, 1, 1, 1, 1, 1, 1, 1, False, 1.0))


def test_errors_like_mmcv():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="f must be float32"):
        ext.upfirdn2d(x, torch.ones(2, 2, dtype=torch.float64), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.)
    with pytest.raises(RuntimeError, match="at least 1x1"):
        ext.upfirdn2d(x, torch.ones(6, 6), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="scalar type"):
        ext.upfirdn2d(x.reshape(2, 4, 4, 1).double(), torch.ones(2, 2), up_x=1, up_y=1,
                      down_x=1, down_y=1, pad_x0=0, pad_x1=0, pad_y0=0, pad_y1=0)
    with pytest.raises(TypeError):
        ext.upfirdn2d(x, torch.ones(2, 2), 1, 1)
