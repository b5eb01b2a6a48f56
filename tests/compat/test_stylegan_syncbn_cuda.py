"""CUDA: upfirdn2d, bias_act, filtered_lrelu and sync_bn_* on a GPU equal the same calls on the
CPU (mmcv's kernels for these are CUDA-only; the stand-in's are the same tensor code on every
device).  Skipped without a GPU -- none exists on the machine these were written on."""

import pytest
import torch

from envdoctor.compat import ext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="requires a CUDA GPU")

E8 = torch.empty(0, dtype=torch.uint8)


def _close(a, b, tol=1e-5):
    return (a.cpu().double() - b.double()).abs().max().item() <= tol * (1 + b.abs().max().item())


def test_upfirdn2d_both_bindings():
    x, f = torch.randn(2, 3, 9, 8), torch.randn(4, 4)
    want = ext.upfirdn2d(x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 2.0)
    assert _close(ext.upfirdn2d(x.cuda(), f.cuda(), 2, 2, 1, 1, 2, 1, 2, 1, False, 2.0), want)
    x1 = x.reshape(-1, 9, 8, 1)
    kw = dict(up_x=1, up_y=1, down_x=2, down_y=2, pad_x0=1, pad_x1=1, pad_y0=1, pad_y1=1)
    assert _close(ext.upfirdn2d(x1.cuda(), f.cuda(), **kw), ext.upfirdn2d(x1, f, **kw))


def test_bias_act_and_filtered_lrelu():
    x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
    e = x.new_empty(0)
    for act in range(1, 10):
        want = ext.bias_act(x, b, e, e, e, 0, 1, act, 0.2, 1.4, 0.9)
        got = ext.bias_act(x.cuda(), b.cuda(), e.cuda(), e.cuda(), e.cuda(), 0, 1, act, 0.2,
                           1.4, 0.9)
        assert _close(got, want)
    fu, fd = torch.randn(4, 4), torch.randn(2, 2)
    args = (2, 2, 2, 2, 2, 2, 0, 0, 1.4, 0.2, 1.0, False, True)
    y, so, _ = ext.filtered_lrelu(x, fu, fd, b, E8, *args)
    yc, soc, _ = ext.filtered_lrelu(x.cuda(), fu.cuda(), fd.cuda(), b.cuda(), E8.cuda(), *args)
    assert _close(yc, y) and soc.shape == so.shape


def test_sync_bn_kernels():
    x = torch.randn(4, 3, 20)
    mean, var = torch.zeros(3), torch.zeros(3)
    ext.sync_bn_forward_mean(x, mean)
    ext.sync_bn_forward_var(x, mean, var)
    mc, vc = torch.zeros(3, device="cuda"), torch.zeros(3, device="cuda")
    ext.sync_bn_forward_mean(x.cuda(), mc)
    ext.sync_bn_forward_var(x.cuda(), mc, vc)
    assert _close(mc, mean) and _close(vc, var)
