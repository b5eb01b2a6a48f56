"""Run by test_roi_align_vs_mmcv.py in a torch 2.13 env: mmcv's compiled `_ext` (argv[1], loaded alone) and
the compat stand-in get the same roi_align calls; prints one JSON line {case: [output, argmax_y, argmax_x,
grad_input equal]}."""

import importlib.util
import json
import os
import sys

import torch

os.environ["ENVDOCTOR_COMPAT_BACKEND"] = "torch"
spec = importlib.util.spec_from_file_location("mmcv._ext", sys.argv[1])
mm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mm)
from envdoctor.compat import ext as cx  # noqa: E402


def call(m, x, rois, grad, ph, pw, scale, sr, mode, aligned):
    shape = (rois.shape[0], x.shape[1], ph, pw)
    o = x.new_zeros(shape)
    ay = x.new_zeros(shape if mode == 0 else (0,))
    ax = x.new_zeros(shape if mode == 0 else (0,))
    kw = dict(aligned_height=ph, aligned_width=pw, spatial_scale=scale, sampling_ratio=sr, pool_mode=mode,
              aligned=aligned)
    m.roi_align_forward(x, rois, o, ay, ax, **kw)
    gi = torch.zeros_like(x)
    m.roi_align_backward(grad, rois, ay, ax, gi, **kw)
    return o, ay, ax, gi


g = torch.Generator().manual_seed(0)
res = {}
for dtype in (torch.float32, torch.float64):
    x = torch.randn(2, 16, 40, 52, generator=g).to(dtype)
    x[1, 3] = 1.5  # a constant channel: ties wherever the bilinear sums are exact
    ctr = torch.rand(150, 2, generator=g) * torch.tensor([230.0, 180.0]) - 10
    wh = torch.rand(150, 2, generator=g) * 120
    rois = torch.cat([torch.randint(0, 2, (150, 1), generator=g).float(), ctr - wh / 2, ctr + wh / 2], 1).to(dtype)
    rois[0, 1:] = torch.tensor([20.0, 20.0, 20.0, 20.0])  # zero size
    for ph, pw, scale, sr in ((7, 7, 0.25, 0), (3, 5, 0.25, 2), (2, 2, 0.125, 0)):
        grad = torch.randn(150, 16, ph, pw, generator=g).to(dtype)
        for mode in (0, 1):
            for aligned in (True, False):
                a = call(mm, x, rois, grad, ph, pw, scale, sr, mode, aligned)
                b = call(cx, x, rois, grad, ph, pw, scale, sr, mode, aligned)
                key = "%s %dx%d scale %g sr %d mode %d aligned %d" % (str(dtype)[6:], ph, pw, scale, sr, mode, aligned)
                res[key] = [bool(torch.equal(p, q)) for p, q in zip(a, b)]
print(json.dumps(res))
