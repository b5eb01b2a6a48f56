"""The compat layer against mmcv's own compiled CPU kernels, in one interpreter, at real model shapes.

Run by bench_compat_ops.py --mmcv-python PY (or directly):

    PYTHONPATH=. PY bench/compat_vs_mmcv.py MMCV_EXT_SO [--reps 5]

PY is an interpreter whose torch is the one the mmcv build was compiled against (the CPU-ops wheel
mmcv-2.2.0-cp311-cp311-linux_x86_64.whl built here for torch 2.13.0+cpu); MMCV_EXT_SO is that wheel's
mmcv/_ext*.so, loaded on its own (the rest of mmcv, and its dependencies, are not needed). Both sides are
called through the same `_ext` signatures, so every row is the same call on mmcv's kernel and on the
compat stand-in. Where mmcv has no CPU kernel (focal loss, ms_deform_attn, masked conv, upfirdn2d,
fused_bias_leakyrelu: CUDA only) the anchor is what mmcv/mmdet run on the CPU instead, re-written here
from their formulas. Prints one tab-separated row per measurement: case, variant, seconds, anchor seconds.
"""

import argparse
import importlib.util
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from envdoctor.compat import ext as compat  # noqa: E402


def load_mmcv_ext(path):
    spec = importlib.util.spec_from_file_location("mmcv._ext", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pair(anchor, ours, reps):
    """Best of `reps` for both, alternating (a load change hits both); the first call of each is a warm-up
    unless it took over 2 s (then it counts: the machine is shared and slow cases are slow enough)."""
    ta, tc = [timed(anchor)], [timed(ours)]
    if ta[0] < 2 and tc[0] < 2:
        ta, tc = [], []
    while len(ta) < reps:
        ta.append(timed(anchor))
        tc.append(timed(ours))
    return min(ta), min(tc)


def boxes_xyxy(g, n, scale=(1333.0, 800.0), size=(8, 256)):
    ctr = torch.rand(n, 2, generator=g) * torch.tensor(scale)
    wh = torch.rand(n, 2, generator=g) * (size[1] - size[0]) + size[0]
    return torch.cat([ctr - wh / 2, ctr + wh / 2], 1)


def rboxes(g, n):
    """(cx, cy, w, h, angle) as mmrotate's DOTA 1024x1024 tiles have them."""
    return torch.cat([torch.rand(n, 2, generator=g) * 1024, torch.rand(n, 2, generator=g) * 80 + 4,
                      (torch.rand(n, 1, generator=g) - 0.5) * 3.14], 1)


def cases(g):
    """(case, fn(ext) -> callable): the call each side makes, at a real model's shape."""
    out = []
    # Faster R-CNN R-50-FPN RPN at test time: batched_nms over 5 levels x 1000 proposals, IoU 0.7
    b = torch.cat([boxes_xyxy(g, 1000, size=(8, 2 ** (lvl + 5))) + lvl * 1400.0 for lvl in range(5)])
    s = torch.rand(5000, generator=g)
    out.append(("nms 5000 boxes iou 0.7 (Faster R-CNN RPN)",
                lambda m: (lambda: m.nms(b, s, iou_threshold=0.7, offset=0))))
    # the bbox head's test-time NMS with soft-NMS (mmdet's soft-NMS configs): 1000 boxes of one class
    b1, s1 = boxes_xyxy(g, 1000), torch.rand(1000, generator=g)

    def soft(m):
        def run():
            dets = b1.new_empty((1000, 5))
            m.softnms(b1.clone(), s1.clone(), dets, iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                      method=2, offset=0)
        return run
    out.append(("softnms 1000 boxes gaussian", soft))
    # Faster R-CNN bbox head: 1000 RoIs on the stride-4 level (C=256, 200x336), 7x7, sr 0, aligned
    x = torch.randn(1, 256, 200, 336, generator=g)
    rois = torch.cat([torch.zeros(1000, 1), boxes_xyxy(g, 1000, size=(8, 112))], 1)

    def roi(mode, backward):
        def make(m):
            shape = (1000, 256, 7, 7)
            kw = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=0,
                      pool_mode=mode, aligned=True)

            def run():
                o = x.new_zeros(shape)
                ay = x.new_zeros(shape if mode == 0 else (0,))
                ax = x.new_zeros(shape if mode == 0 else (0,))
                m.roi_align_forward(x, rois, o, ay, ax, **kw)
                if backward:
                    m.roi_align_backward(torch.ones_like(o), rois, ay, ax, torch.zeros_like(x), **kw)
            return run
        return make
    out.append(("roi_align 1000x256x7x7 avg fwd (Faster R-CNN)", roi(1, False)))
    out.append(("roi_align 1000x256x7x7 avg fwd+bwd", roi(1, True)))
    out.append(("roi_align 1000x256x7x7 max fwd+bwd", roi(0, True)))
    # mmrotate: 2000 rotated proposals, test-time IoU matrix and rotated NMS (IoU 0.1, as Oriented R-CNN)
    rb = rboxes(g, 2000)
    rs = torch.rand(2000, generator=g)
    out.append(("box_iou_rotated 2000x2000",
                lambda m: (lambda: m.box_iou_rotated(rb, rb, rb.new_zeros(2000 * 2000), mode_flag=0,
                                                     aligned=False))))

    def nms_r(m):
        def run():
            order = rs.sort(descending=True)[1]
            m.nms_rotated(rb, rs, order, rb[order], rb.new_empty(0), iou_threshold=0.1, multi_label=False)
        return run
    out.append(("nms_rotated 2000 boxes iou 0.1 (mmrotate)", nms_r))
    # Oriented R-CNN's RoI head: 512 rotated RoIs on the stride-8 level (C=256, 128x128), 7x7, sr 2
    xr = torch.randn(1, 256, 128, 128, generator=g)
    rr = torch.cat([torch.zeros(512, 1), rboxes(g, 512)], 1)

    def roi_r(backward):
        def make(m):
            kw = dict(pooled_height=7, pooled_width=7, spatial_scale=0.125, sampling_ratio=2,
                      aligned=True, clockwise=False)

            def run():
                o = xr.new_zeros((512, 256, 7, 7))
                m.roi_align_rotated_forward(xr, rr, o, **kw)
                if backward:
                    m.roi_align_rotated_backward(torch.ones_like(o), rr, torch.zeros_like(xr), **kw)
            return run
        return make
    out.append(("roi_align_rotated 512x256x7x7 fwd (Oriented R-CNN)", roi_r(False)))
    out.append(("roi_align_rotated 512x256x7x7 fwd+bwd", roi_r(True)))
    # PSANet (mmseg, 512x512 crops): features at 1/8 = 64x64, mask 97x97, 'collect' (0) and 'distribute' (1)
    hm = wm = 97
    pin = torch.randn(1, hm * wm, 64, 64, generator=g)

    def psa(kind, backward):
        def make(m):
            kw = dict(psa_type=kind, num_=1, h_feature=64, w_feature=64, h_mask=hm, w_mask=wm,
                      half_h_mask=hm // 2, half_w_mask=wm // 2)

            def run():
                o = pin.new_zeros((1, 64 * 64, 64, 64))
                m.psamask_forward(pin, o, **kw)
                if backward:
                    m.psamask_backward(torch.ones_like(o), torch.zeros_like(pin), **kw)
            return run
        return make
    out.append(("psamask collect 97x97 on 64x64 fwd+bwd (PSANet)", psa(0, True)))
    out.append(("psamask distribute 97x97 on 64x64 fwd+bwd", psa(1, True)))
    # DCNv2 in a ResNet-50 stage-3 block of a DCN detector at 800x1333: 256 -> 256, 3x3 on 50x84
    xi = torch.randn(1, 256, 50, 84, generator=g)
    off = torch.randn(1, 18, 50, 84, generator=g) * 2
    msk = torch.rand(1, 9, 50, 84, generator=g)
    w = torch.randn(256, 256, 3, 3, generator=g) * 0.02
    bias = torch.zeros(256)

    def dcn(m):
        def run():
            o = xi.new_zeros((1, 256, 50, 84))
            m.modulated_deform_conv_forward(xi, w, bias, xi.new_empty(0), off, msk, o, xi.new_empty(0),
                                            kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1,
                                            pad_w=1, dilation_h=1, dilation_w=1, group=1,
                                            deformable_group=1, with_bias=True)
        return run
    out.append(("modulated_deform_conv 256x50x84 3x3 fwd (DCNv2)", dcn))
    return out


def focal_mmdet_cpu(logits, labels):
    """mmdet's CPU path for the sigmoid focal loss (py_sigmoid_focal_loss), forward + autograd backward."""
    x = logits.detach().requires_grad_(True)
    target = torch.nn.functional.one_hot(labels, x.shape[1] + 1)[:, :x.shape[1]].to(x.dtype)
    p = x.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    weight = (0.25 * target + 0.75 * (1 - target)) * pt.pow(2.0)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x, target, reduction="none") * weight
    loss.sum().backward()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mmcv_ext")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--only", default="",
                    help="comma-separated prefixes: run only the cases whose name starts with one")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    def wanted(case):
        return not args.only or any(w and case.startswith(w) for w in args.only.split(","))
    mmcv = load_mmcv_ext(args.mmcv_ext)
    g = torch.Generator().manual_seed(0)
    print("#\ttorch %s, mmcv._ext %s (%s), %d threads" % (torch.__version__, os.path.basename(args.mmcv_ext),
                                                          mmcv.get_compiler_version(), torch.get_num_threads()),
          flush=True)
    for case, make in cases(g):
        if not wanted(case):
            continue
        anchor, t = pair(make(mmcv), make(compat), args.reps)
        print("%s\tmmcv CPU kernel (anchor)\t%.6f\t%.6f" % (case, anchor, anchor), flush=True)
        print("%s\tcompat\t%.6f\t%.6f" % (case, t, anchor), flush=True)
    # no mmcv CPU kernel: the anchor is what mmdet runs on the CPU instead
    case = "sigmoid_focal_loss 120000x80 fwd+bwd (RetinaNet)"
    if not wanted(case):
        return
    logits = torch.randn(120000, 80, generator=g)
    labels = torch.randint(0, 81, (120000,), generator=g)

    def ours():
        out = torch.empty_like(logits)
        compat.sigmoid_focal_loss_forward(logits, labels, logits.new_empty(0), out, gamma=2.0, alpha=0.25)
        compat.sigmoid_focal_loss_backward(logits, labels, logits.new_empty(0), out, gamma=2.0, alpha=0.25)
    anchor, t = pair(lambda: focal_mmdet_cpu(logits, labels), ours, args.reps)
    print("%s\tmmdet py_sigmoid_focal_loss (no mmcv CPU kernel)\t%.6f\t%.6f" % (case, anchor, anchor))
    print("%s\tcompat\t%.6f\t%.6f" % (case, t, anchor), flush=True)


if __name__ == "__main__":
    main()
