"""End to end with mmcv's real Python code (mmcv-lite 2.2.0, mmcv 1.7.2 without ops).

The compat package is enabled into a test venv's site-packages (where envdoctor is
not installed); mmcv's own ``mmcv.ops`` classes then run on the stand-in ``mmcv._ext``.
"""

import json
import os
import subprocess
import textwrap

import pytest

from conftest import site_packages
from envdoctor.compat import hook

NOTICE = "envdoctor-compat: serving mmcv._ext"

SCRIPT = textwrap.dedent(r'''
    import json, sys
    import torch
    torch.manual_seed(0)
    from mmcv.ops import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                          ModulatedDeformConv2dPack, deform_conv2d, modulated_deform_conv2d)
    import mmcv._ext as ext
    from _envdoctor_compat import mmcv_api as mine
    res = {"ext_is_compat": getattr(ext, "__envdoctor_compat__", False)}

    def grads(mod, *inputs):
        for p in mod.parameters():
            p.grad = None
        xs = [t.detach().clone().requires_grad_(True) for t in inputs]
        out = mod(*xs)
        g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        out.backward(g)
        return [out.detach()] + [t.grad for t in xs] + [p.grad for p in mod.parameters()]

    def maxdiff(a, b):
        return max((x - y).abs().max().item() for x, y in zip(a, b))

    # ModulatedDeformConv2dPack (DCNv2): mmcv's class vs envdoctor's, same state dict
    a = ModulatedDeformConv2dPack(8, 6, 3, padding=1, deform_groups=2).double()
    b = mine.ModulatedDeformConv2dPack(8, 6, 3, padding=1, deform_groups=2).double()
    assert list(a.state_dict()) == list(b.state_dict()), (list(a.state_dict()), list(b.state_dict()))
    with torch.no_grad():
        a.conv_offset.weight.normal_(0, 0.3)
        a.conv_offset.bias.normal_(0, 0.3)
        a.conv_offset.bias[:36] = torch.round(a.conv_offset.bias[:36] * 1024) / 1024
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    res["dcnv2_pack"] = maxdiff(grads(a, x), grads(b, x))

    # at init (zero offsets: samples on exactly -1) the conv_offset gradients still agree
    a0 = ModulatedDeformConv2dPack(8, 6, 3, padding=1, deform_groups=2).double()
    b0 = mine.ModulatedDeformConv2dPack(8, 6, 3, padding=1, deform_groups=2).double()
    b0.load_state_dict(a0.state_dict())
    res["dcnv2_pack_init"] = maxdiff(grads(a0, x), grads(b0, x))

    # DeformConv2dPack (DCNv1), groups and a batch divisible by im2col_step
    c = DeformConv2dPack(8, 4, (3, 2), padding=(1, 0), groups=2, deform_groups=2, im2col_step=2).double()
    d = mine.DeformConv2dPack(8, 4, (3, 2), padding=(1, 0), groups=2, deform_groups=2, im2col_step=2).double()
    with torch.no_grad():
        c.conv_offset.weight.normal_(0, 0.3)
    d.load_state_dict(c.state_dict())
    x4 = torch.randn(4, 8, 6, 5, dtype=torch.float64)
    res["dcnv1_pack"] = maxdiff(grads(c, x4), grads(d, x4))

    # functional forms, float32
    xf = torch.randn(1, 4, 6, 6)
    off = torch.randn(1, 18, 6, 6)
    msk = torch.rand(1, 9, 6, 6)
    w = torch.randn(5, 4, 3, 3)
    bias = torch.randn(5)
    o1 = modulated_deform_conv2d(xf, off, msk, w, bias, 1, 1, 1, 1, 1)
    o2 = mine.modulated_deform_conv2d(xf, off, msk, w, bias, 1, 1, 1, 1, 1)
    res["functional_v2_fp32"] = (o1 - o2).abs().max().item()
    o1 = deform_conv2d(xf, off, w, 1, 1, 1, 1, 1, False, 32)
    o2 = mine.deform_conv2d(xf, off, w, 1, 1, 1, 1, 1, False, 32)
    res["functional_v1_fp32"] = (o1 - o2).abs().max().item()

    # E2FGVI / BasicVSR++ SecondOrderDeformableAlignment, subclassing mmcv's class
    class SecondOrderDeformableAlignment(ModulatedDeformConv2d):
        def __init__(self, *args, **kwargs):
            self.max_residue_magnitude = kwargs.pop("max_residue_magnitude", 10)
            super().__init__(*args, **kwargs)
            self.conv_offset = torch.nn.Sequential(
                torch.nn.Conv2d(3 * self.out_channels + 4, self.out_channels, 3, 1, 1),
                torch.nn.LeakyReLU(negative_slope=0.1, inplace=True),
                torch.nn.Conv2d(self.out_channels, self.out_channels, 3, 1, 1),
                torch.nn.LeakyReLU(negative_slope=0.1, inplace=True),
                torch.nn.Conv2d(self.out_channels, self.out_channels, 3, 1, 1),
                torch.nn.LeakyReLU(negative_slope=0.1, inplace=True),
                torch.nn.Conv2d(self.out_channels, 27 * self.deform_groups, 3, 1, 1))
            self.init_offset()

        def init_offset(self):
            torch.nn.init.constant_(self.conv_offset[-1].weight, 0)
            torch.nn.init.constant_(self.conv_offset[-1].bias, 0)

        def forward(self, x, extra_feat, flow_1, flow_2):
            extra_feat = torch.cat([extra_feat, flow_1, flow_2], dim=1)
            out = self.conv_offset(extra_feat)
            o1, o2, mask = torch.chunk(out, 3, dim=1)
            offset = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
            offset_1, offset_2 = torch.chunk(offset, 2, dim=1)
            offset_1 = offset_1 + flow_1.flip(1).repeat(1, offset_1.size(1) // 2, 1, 1)
            offset_2 = offset_2 + flow_2.flip(1).repeat(1, offset_2.size(1) // 2, 1, 1)
            offset = torch.cat([offset_1, offset_2], dim=1)
            mask = torch.sigmoid(mask)
            return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride,
                                           self.padding, self.dilation, self.groups,
                                           self.deform_groups)

    H, W = 12, 20
    layer = SecondOrderDeformableAlignment(256, 128, 3, padding=1, deform_groups=16)
    torch.nn.init.normal_(layer.conv_offset[-1].weight, 0, 1e-3)
    feat = torch.randn(1, 256, H, W, requires_grad=True)
    cond = torch.randn(1, 3 * 128, H, W)
    flow1 = torch.randn(1, 2, H, W) * 3
    flow2 = torch.randn(1, 2, H, W) * 3
    out = layer(feat, cond, flow1, flow2)
    out.square().mean().backward()
    res["e2fgvi_out_shape"] = list(out.shape)
    res["e2fgvi_finite"] = bool(torch.isfinite(out).all() and torch.isfinite(feat.grad).all()
                                and torch.isfinite(layer.conv_offset[0].weight.grad).all())
    res["e2fgvi_offset_grad_nonzero"] = layer.conv_offset[-1].weight.grad.abs().sum().item() > 0
    keys = sorted(layer.state_dict())
    res["e2fgvi_keys"] = keys
    # the same weights through envdoctor's own functional op
    with torch.no_grad():
        eo = layer.conv_offset(torch.cat([cond, flow1, flow2], 1))
        o1_, o2_, m_ = torch.chunk(eo, 3, dim=1)
        off_ = 10 * torch.tanh(torch.cat((o1_, o2_), 1))
        a_, b_ = torch.chunk(off_, 2, dim=1)
        off_ = torch.cat([a_ + flow1.flip(1).repeat(1, a_.size(1) // 2, 1, 1),
                          b_ + flow2.flip(1).repeat(1, b_.size(1) // 2, 1, 1)], 1)
        mine_out = mine.modulated_deform_conv2d(feat, off_, torch.sigmoid(m_), layer.weight,
                                                layer.bias, 1, 1, 1, 1, 16)
    res["e2fgvi_vs_mine"] = (mine_out - out.detach()).abs().max().item()

    # mmcv's own NMS wrappers (values pinned by mmcv's tests/test_ops/test_nms.py)
    import numpy as np
    from mmcv.ops import batched_nms, nms, nms_match, soft_nms
    nb = torch.tensor([[6.0, 3.0, 8.0, 7.0], [3.0, 6.0, 9.0, 11.0], [3.0, 7.0, 10.0, 12.0],
                       [1.0, 4.0, 13.0, 7.0]])
    ns = torch.tensor([0.6, 0.9, 0.7, 0.2])
    dets, inds = nms(nb, ns, iou_threshold=0.3, offset=0)
    res["nms"] = [dets.tolist(), inds.tolist()]
    res["nms_numpy"] = nms(nb.numpy(), ns.numpy(), 0.3)[1].tolist()
    res["soft_nms"] = {}
    for m in ("linear", "gaussian", "naive"):
        d, i = soft_nms(nb, ns, iou_threshold=0.3, sigma=0.5, min_score=0.01, method=m)
        res["soft_nms"][m] = [d[:, 4].tolist(), i.tolist()]
    md = np.array([[49.1, 32.4, 51.0, 35.9, 0.9], [49.3, 32.9, 51.0, 35.3, 0.9],
                   [35.3, 11.5, 39.9, 14.5, 0.4], [35.2, 11.7, 39.7, 15.7, 0.3]], dtype=np.float32)
    res["nms_match"] = [g.tolist() for g in nms_match(md, 0.6)]
    gb = torch.rand(200, 2) * 50
    gb = torch.cat([gb, gb + torch.rand(200, 2) * 20 + 1], 1)
    gs = torch.rand(200)
    gi = torch.randint(0, 3, (200,))
    kept_boxes, keep = batched_nms(gb, gs, gi, dict(type="nms", iou_threshold=0.5))
    _, keep_split = batched_nms(gb, gs, gi, dict(type="nms", iou_threshold=0.5, split_thr=50))
    res["batched_nms_split_equal"] = keep.tolist() == keep_split.tolist()
    per_class = []
    for c in range(3):
        idx = torch.nonzero(gi == c).flatten()
        per_class += idx[ext.nms(gb[idx], gs[idx], iou_threshold=0.5, offset=0)].tolist()
    res["batched_nms_is_per_class"] = sorted(per_class) == sorted(keep.tolist())

    # mmcv's own RoIAlign (values pinned by mmcv's tests/test_ops/test_roi_align.py)
    from mmcv.ops import RoIAlign, roi_align
    rx = torch.tensor([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.],
                         [11., 12., 15., 16.]]]], requires_grad=True)
    rr = torch.tensor([[0., 0., 0., 3., 3.]])
    ro = roi_align(rx, rr, (2, 2), 1.0, 2, "avg", True)
    ro.backward(torch.ones_like(ro))
    res["roi_align"] = [ro.tolist(), rx.grad.tolist()]
    fx = torch.randn(2, 8, 20, 24, dtype=torch.float64, requires_grad=True)
    fr = torch.tensor([[0, 3.2, 4.1, 60.3, 50.2], [1, -8.0, 10.0, 30.0, 90.0]], dtype=torch.float64)
    res["roi_align_modes"] = {}
    for mode in ("avg", "max"):
        fx.grad = None
        m = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, pool_mode=mode, aligned=True)
        y = m(fx, fr)
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
        res["roi_align_modes"][mode] = [list(y.shape), bool(torch.isfinite(fx.grad).all()),
                                        fx.grad.abs().sum().item() > 0]
    try:  # mmcv's own torchvision route (mmcv 1.7.2's env has torchvision, mmcv-lite's not)
        mt = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True,
                      use_torchvision=True)(fx, fr)
        mc = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)(fx, fr)
        res["roi_align_vs_torchvision"] = (mt - mc).abs().max().item()
    except ImportError:
        res["roi_align_vs_torchvision"] = 0.0

    # mmcv's own sigmoid_focal_loss (values pinned by mmcv's tests/test_ops/test_focal_loss.py)
    from mmcv.ops import SigmoidFocalLoss, sigmoid_focal_loss
    fl_x = torch.tensor([[1., 0, -1.], [0, 1., 2.]], requires_grad=True)
    fl = sigmoid_focal_loss(fl_x, torch.tensor([2, 1]), 2.0, 0.25, None, "mean")
    fl.backward()
    res["focal"] = [fl.item(), fl_x.grad.tolist()]
    fw = SigmoidFocalLoss(2.0, 0.25, weight=torch.tensor([1.0, 2.0, 3.0]), reduction="sum")
    res["focal_weighted"] = fw(torch.zeros(2, 3), torch.tensor([0, 2])).item()

    # mmcv's own MultiScaleDeformableAttnFunction (the _ext kernels) vs mmcv's own grid_sample
    # version, forward and gradients, float64
    from mmcv.ops.multi_scale_deform_attn import (MultiScaleDeformableAttnFunction,
                                                  multi_scale_deformable_attn_pytorch)
    shapes = torch.tensor([[6, 8], [3, 4]])
    start = torch.tensor([0, 48])
    val = torch.randn(2, 60, 4, 8, dtype=torch.float64)
    loc = torch.rand(2, 10, 4, 2, 4, 2, dtype=torch.float64) * 1.2 - 0.1
    att = torch.rand(2, 10, 4, 2, 4, dtype=torch.float64).softmax(-1)
    outs = []
    for fn in ("ext", "pytorch"):
        leaves = [t.clone().requires_grad_(True) for t in (val, loc, att)]
        if fn == "ext":
            o = MultiScaleDeformableAttnFunction.apply(leaves[0], shapes, start, leaves[1],
                                                       leaves[2], 2)
        else:
            o = multi_scale_deformable_attn_pytorch(leaves[0], shapes, leaves[1], leaves[2])
        o.backward(torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o))
        outs.append([o.detach()] + [t.grad for t in leaves])
    res["msda_vs_mmcv_pytorch"] = max((a - b).abs().max().item() for a, b in zip(*outs))

    # mmcv's own rotated ops (values pinned by mmcv's test_box_iou_rotated.py, test_nms_rotated.py)
    from mmcv.ops import box_iou_rotated, nms_rotated
    rb1 = torch.tensor([[1.0, 1.0, 3.0, 4.0, 0.5], [2.0, 2.0, 3.0, 4.0, 0.6], [7.0, 7.0, 8.0, 8.0, 0.4]])
    rb2 = torch.tensor([[0.0, 2.0, 2.0, 5.0, 0.3], [2.0, 1.0, 3.0, 3.0, 0.5], [5.0, 5.0, 6.0, 7.0, 0.4]])
    res["box_iou_rotated"] = [box_iou_rotated(rb1, rb2).tolist(),
                              box_iou_rotated(rb1, rb2, aligned=True).tolist(),
                              box_iou_rotated(rb1 * torch.tensor([1, 1, 1, 1, -1.0]),
                                              rb2 * torch.tensor([1, 1, 1, 1, -1.0]),
                                              clockwise=False).tolist()]
    nb5 = torch.tensor([[6.0, 3.0, 8.0, 7.0, 0.5, 0.7], [3.0, 6.0, 9.0, 11.0, 0.6, 0.8],
                        [3.0, 7.0, 10.0, 12.0, 0.3, 0.5], [1.0, 4.0, 13.0, 7.0, 0.6, 0.9]])
    rd, rk = nms_rotated(nb5[:, :5], nb5[:, -1], 0.5)
    rd2, rk2 = nms_rotated(nb5[:, :5], nb5[:, -1], 0.5, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    res["nms_rotated"] = [rk.tolist(), rd[:, :5].tolist(), rk2.tolist()]

    # mmcv's own RoIAlignRotated (values pinned by mmcv's test_roi_align_rotated.py)
    from mmcv.ops import roi_align_rotated
    rrx = torch.tensor([[[[1., 2., 5., 6.], [3., 4., 7., 8.], [9., 10., 13., 14.],
                          [11., 12., 15., 16.]]]], requires_grad=True)
    rro = roi_align_rotated(rrx, torch.tensor([[0., 1.5, 1.5, 3., 3., 3.141592653589793 / 2]]),
                            (2, 2), 1.0, 2, True)
    rro.backward(torch.ones_like(rro))
    res["roi_align_rotated"] = [rro.tolist(), rrx.grad[0, 0, 0].tolist()]

    # mmcv's own PSAMask (collect and distribute), forward and backward, vs a direct loop
    from mmcv.ops import PSAMask
    res["psamask"] = []
    for kind in ("collect", "distribute"):
        pm_x = torch.randn(2, 7 * 9, 4, 5, requires_grad=True)
        pm_y = PSAMask(kind, (7, 9))(pm_x)
        pm_y.backward(pm_y.detach())
        want = torch.zeros(2, 20, 4, 5)
        copied = torch.zeros(2, 7 * 9, 4, 5)
        for h in range(4):
            for w in range(5):
                for hi in range(max(0, 3 - h), min(7, 4 + 3 - h)):
                    for wi in range(max(0, 4 - w), min(9, 5 + 4 - w)):
                        sh = (hi + h - 3) * 5 + (wi + w - 4)
                        a, b = (sh, h * 5 + w) if kind == "collect" else (h * 5 + w, sh)
                        want.view(2, 20, 20)[:, a, b] = pm_x.detach()[:, hi * 9 + wi, h, w]
                        copied[:, hi * 9 + wi, h, w] = 1
        # d(sum(y * y.detach()))/dx = x where x was copied, 0 elsewhere
        res["psamask"].append([(pm_y.detach() - want).abs().max().item(),
                               (pm_x.grad - pm_x.detach() * copied).abs().max().item()])

    # mmcv's own MaskedConv2d (Guided Anchoring) vs conv2d * (mask > 0)
    from mmcv.ops import MaskedConv2d
    mc = MaskedConv2d(4, 6, 3, padding=1).double()
    mc_x = torch.randn(1, 4, 10, 12, dtype=torch.float64)
    mc_m = (torch.rand(1, 10, 12) > 0.5).double()
    with torch.no_grad():
        mc_y = mc(mc_x, mc_m)
        mc_want = torch.nn.functional.conv2d(mc_x, mc.weight, mc.bias, padding=1) * (mc_m[:, None] > 0)
    res["masked_conv"] = (mc_y - mc_want).abs().max().item()

    # mmcv's own FusedBiasLeakyReLUFunction (the _ext path) vs mmcv's own bias_leakyrelu_ref
    from mmcv.ops.fused_bias_leakyrelu import FusedBiasLeakyReLUFunction, bias_leakyrelu_ref
    fb = []
    for path in ("ext", "ref"):
        fx = torch.linspace(-2, 2, 2 * 3 * 4 * 5, dtype=torch.float64).view(2, 3, 4, 5)
        fx = fx.clone().requires_grad_(True)
        fbias = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64, requires_grad=True)
        if path == "ext":
            fy = FusedBiasLeakyReLUFunction.apply(fx, fbias, 0.2, 2 ** 0.5)
        else:
            fy = bias_leakyrelu_ref(fx, fbias, 0.2, 2 ** 0.5)
        fy.backward(torch.ones_like(fy))
        fb.append([fy.detach(), fx.grad, fbias.grad])
    res["fused_bias_leakyrelu"] = max((a - b).abs().max().item() for a, b in zip(*fb))

    # other ops exist (hasattr) but explain themselves when called
    try:
        ext.tin_shift_forward(torch.zeros(1), torch.zeros(1), torch.zeros(1))
        res["unserved"] = "no error"
    except NotImplementedError as e:
        res["unserved"] = str(e)
    print("RESULT " + json.dumps(res))
''')


def _run(venv, code, env_extra=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("ENVDOCTOR_COMPAT", None)
    env.update(env_extra or {})
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=600)


@pytest.fixture(params=["mmcv2_env", "mmcv1_env"])
def enabled_env(request):
    venv = request.getfixturevalue(request.param)
    site = site_packages(venv)
    hook.disable(site)
    # precondition: the real failure
    p = _run(venv, "from mmcv.ops import ModulatedDeformConv2dPack")
    assert p.returncode != 0 and "No module named 'mmcv._ext'" in p.stderr, p.stderr[-2000:]
    created = hook.enable(site)
    yield venv, site, created
    hook.disable(site)


def test_mmcv_python_code_runs_on_the_standin(enabled_env):
    venv, site, created = enabled_env
    assert sorted(p.name for p in created) == ["_envdoctor_compat", "_envdoctor_compat.pth"]
    p = _run(venv, SCRIPT)
    assert p.returncode == 0, p.stderr[-4000:]
    assert p.stderr.count(NOTICE) == 1, p.stderr
    assert "no compiled mmcv._ext is installed" in p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    assert res["ext_is_compat"] is True
    for key in ("dcnv2_pack", "dcnv2_pack_init", "dcnv1_pack"):
        assert res[key] <= 1e-12, (key, res[key])
    assert res["functional_v2_fp32"] <= 1e-5
    assert res["functional_v1_fp32"] <= 1e-5
    assert res["e2fgvi_out_shape"] == [1, 128, 12, 20]
    assert res["e2fgvi_finite"] and res["e2fgvi_offset_grad_nonzero"]
    assert res["e2fgvi_vs_mine"] <= 1e-5
    assert res["e2fgvi_keys"] == sorted(
        ["weight", "bias"] + ["conv_offset.%d.%s" % (i, s) for i in (0, 2, 4, 6)
                              for s in ("weight", "bias")])
    assert res["nms"] == [[[3.0, 6.0, 9.0, 11.0, 0.8999999761581421],
                           [6.0, 3.0, 8.0, 7.0, 0.6000000238418579],
                           [1.0, 4.0, 13.0, 7.0, 0.20000000298023224]], [1, 0, 3]]
    assert res["nms_numpy"] == [1, 0, 3]
    soft = res["soft_nms"]
    assert soft["linear"][1] == [1, 0, 2, 3] and abs(soft["linear"][0][2] - 0.29024392) < 1e-7
    assert soft["gaussian"][1] == [1, 0, 2, 3]
    assert max(abs(a - b) for a, b in zip(soft["gaussian"][0],
                                          [0.9, 0.59630775, 0.35275510, 0.18650459])) < 1e-7
    assert soft["naive"][1] == [1, 0, 3]
    assert res["nms_match"] == [[0, 1], [2, 3]]
    assert res["batched_nms_split_equal"] and res["batched_nms_is_per_class"]
    assert res["roi_align"] == [[[[[1.9375, 4.75], [7.5625, 10.375]]]],
                                [[[[0.47265625, 0.4296875, 0.4296875, 0.04296875],
                                   [0.4296875, 0.390625, 0.390625, 0.0390625],
                                   [0.4296875, 0.390625, 0.390625, 0.0390625],
                                   [0.04296875, 0.0390625, 0.0390625, 0.00390625]]]]]
    for mode in ("avg", "max"):
        assert res["roi_align_modes"][mode] == [[2, 8, 7, 7], True, True], mode
    assert res["roi_align_vs_torchvision"] <= 1e-12
    assert abs(res["focal"][0] - 1.10251057) <= 1e-7
    want = [[0.28808805, 0.11185755, -0.09602935], [0.11185755, -0.00657264, 0.40376765]]
    assert max(abs(a - b) for ra, rb in zip(res["focal"][1], want) for a, b in zip(ra, rb)) <= 1e-7
    # logit 0: p = 1/2; per row 0.25*0.25*log2 + 2 * 0.75*0.25*log2, times weight[label] (1, 3)
    assert abs(res["focal_weighted"] - 4 * (0.0625 + 0.375) * 0.6931471805599453) <= 1e-6
    assert res["msda_vs_mmcv_pytorch"] <= 1e-10
    want = [[0.3708, 0.4351, 0.0000], [0.1104, 0.4487, 0.0424], [0.0000, 0.0000, 0.3622]]
    for got in (res["box_iou_rotated"][0], res["box_iou_rotated"][2]):
        assert max(abs(a - b) for ra, rb in zip(got, want) for a, b in zip(ra, rb)) <= 1e-4
    assert max(abs(a - b) for a, b in zip(res["box_iou_rotated"][1], [0.3708, 0.4487, 0.3622])) <= 1e-4
    assert res["nms_rotated"][0] == [3, 1, 0] and res["nms_rotated"][2] == [3, 1, 0]
    assert res["nms_rotated"][1] == [[1.0, 4.0, 13.0, 7.0, 0.6000000238418579],
                                     [3.0, 6.0, 9.0, 11.0, 0.6000000238418579],
                                     [6.0, 3.0, 8.0, 7.0, 0.5]]
    rr_out, rr_grad_row = res["roi_align_rotated"]
    assert max(abs(a - b) for ra, rb in zip(rr_out[0][0], [[7.5625, 1.9375], [10.375, 4.75]])
               for a, b in zip(ra, rb)) <= 1e-6
    assert max(abs(a - b) for a, b in zip(rr_grad_row, [0.47265625, 0.4296875, 0.4296875,
                                                        0.04296875])) <= 1e-6
    assert res["psamask"] == [[0.0, 0.0], [0.0, 0.0]]
    assert res["masked_conv"] <= 1e-12
    assert res["fused_bias_leakyrelu"] <= 1e-6  # the kernel's alpha and scale are float32
    assert "mmcv._ext.tin_shift_forward is not available" in res["unserved"]
    assert "envdoctor fix" in res["unserved"]


def test_env_var_off_and_disable(enabled_env):
    venv, site, created = enabled_env
    p = _run(venv, "from mmcv.ops import ModulatedDeformConv2dPack", {"ENVDOCTOR_COMPAT": "0"})
    assert p.returncode != 0
    assert "ModuleNotFoundError: No module named 'mmcv._ext'" in p.stderr
    assert NOTICE not in p.stderr
    # forced: served even though nothing is wrong with the (absent) real module's lookup
    p = _run(venv, "import mmcv._ext as e; print(e.__envdoctor_compat__)", {"ENVDOCTOR_COMPAT": "force"})
    assert p.returncode == 0 and p.stdout.strip() == "True" and "forced" in p.stderr
    removed = hook.disable(site)
    assert sorted(removed) == sorted(created)
    assert not any(path.exists() for path in created)
    p = _run(venv, "from mmcv.ops import ModulatedDeformConv2dPack")
    assert p.returncode != 0 and "No module named 'mmcv._ext'" in p.stderr
