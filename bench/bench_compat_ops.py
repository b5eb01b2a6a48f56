"""Speed of the compat layer's nms, roi_align and sigmoid focal loss at real model shapes.

Usage:  PYTHONPATH=. python bench/bench_compat_ops.py [--reps 5]

Anchors, measured in the same run: torchvision's compiled ``nms`` and ``roi_align`` kernels
(the goal is <= 1.2x) and, for the focal loss (which torchvision computes differently, from
logits), ``torchvision.ops.sigmoid_focal_loss`` as a speed reference only.  Time = best of
--reps after a warm-up, variants interleaved.  Shapes (mmdet 3.3 Faster R-CNN / RetinaNet
R-50-FPN, 800x1333 input):

* nms: the RPN's batched NMS at test time, 5 levels x 1000 boxes, IoU 0.7 (mmcv's
  ``batched_nms`` offsets the boxes per level and calls ``nms`` once on all 5000);
* roi_align: the bbox head, 1000 RoIs on the stride-4 level (C=256, 200x336), 7x7,
  ``sampling_ratio=0``, aligned, avg mode; forward and forward+backward; max mode too;
* sigmoid focal loss: RetinaNet's classification loss, 120,000 anchors x 80 classes, fp32,
  forward and backward kernels;
* ms_deform_attn: Deformable DETR's encoder layer (bs 1, 4 levels of a 800x1066 input at
  strides 8-64 = 17,821 queries, 8 heads x 32 channels, 4 points), forward and backward
  kernels; anchor: the grid_sample formulation mmcv itself runs on the CPU
  (``multi_scale_deformable_attn_pytorch``, re-written here), forward and autograd backward;
* box_iou_rotated: 2,000 x 2,000 rotated boxes (mmrotate's test-time NMS size); no anchor
  (torchvision has no rotated IoU), absolute time only.

Variants: ``compat`` (what the stand-in does: the torchvision fast path where it is
provably identical), ``compat-torch`` (``ENVDOCTOR_COMPAT_BACKEND=torch``: pure PyTorch).

Against mmcv's own compiled CPU kernels (the goal: <= 2x) with ``--mmcv-python PY``: PY is an
interpreter with the torch an mmcv wheel with ops was built for (here: torch 2.13.0+cpu, e.g.
``python3.11 -m venv v && v/bin/pip install torch==2.13.0``); the wheel (``--mmcv-wheel``, default the
CPU-ops build in ~/.cache/envdoctor-build-wheels/mmcv-2.2.0/) has its ``_ext`` extracted and loaded alone
by bench/compat_vs_mmcv.py in PY, which times every op on both at real model shapes in that one process
(``--mmcv-only`` selects cases by name prefix).
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from envdoctor.compat import ext  # noqa: E402


def best(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def with_backend(name, fn):
    def run():
        old = os.environ.get("ENVDOCTOR_COMPAT_BACKEND")
        if name:
            os.environ["ENVDOCTOR_COMPAT_BACKEND"] = name
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop("ENVDOCTOR_COMPAT_BACKEND", None)
            else:
                os.environ["ENVDOCTOR_COMPAT_BACKEND"] = old
    return run


def nms_inputs(g):
    boxes, scores = [], []
    for lvl in range(5):
        ctr = torch.rand(1000, 2, generator=g) * torch.tensor([1333.0, 800.0])
        wh = torch.rand(1000, 2, generator=g) * 2 ** (lvl + 5) + 8
        b = torch.cat([ctr - wh / 2, ctr + wh / 2], 1)
        boxes.append(b + lvl * 1400.0)  # batched_nms: disjoint per level
        scores.append(torch.rand(1000, generator=g))
    return torch.cat(boxes), torch.cat(scores)


def roi_inputs(g, R=1000):
    x = torch.randn(1, 256, 200, 336, generator=g)
    ctr = torch.rand(R, 2, generator=g) * torch.tensor([1333.0, 800.0])
    wh = torch.rand(R, 2, generator=g) * 110 + 8  # the stride-4 level's RoIs (< 112 px)
    rois = torch.cat([torch.zeros(R, 1), ctr - wh / 2, ctr + wh / 2], 1)
    return x, rois


def roi_run(x, rois, mode, backward):
    shape = (rois.shape[0], x.shape[1], 7, 7)
    out = x.new_zeros(shape)
    ay = x.new_zeros(shape if mode == 0 else (0,))
    ax = x.new_zeros(shape if mode == 0 else (0,))
    kw = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=0,
              pool_mode=mode, aligned=True)
    ext.roi_align_forward(x, rois, out, ay, ax, **kw)
    if backward:
        gi = x.new_zeros(x.shape)
        ext.roi_align_backward(torch.ones_like(out), rois, ay, ax, gi, **kw)


def tv_roi(x, rois, backward):
    import torchvision

    xx = x.detach().requires_grad_(backward)
    with torch.set_grad_enabled(backward):
        out = torchvision.ops.roi_align(xx, rois, (7, 7), 0.25, 0, True)
        if backward:
            out.backward(torch.ones_like(out))


class Rows(list):
    """Prints each row as it is measured (a slow variant does not hide the others)."""

    def append(self, row):
        super().append(row)
        case, variant, t, a = row
        print("%-44s %-42s %9.4f %6.2fx" % (case, variant, t, t / a), flush=True)


def msda_inputs(g):
    shapes = torch.tensor([[100, 134], [50, 67], [25, 34], [13, 17]])
    start = torch.cat([torch.zeros(1, dtype=torch.int64), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(1, keys, 8, 32, generator=g)
    loc = torch.rand(1, keys, 8, 4, 4, 2, generator=g)
    attn = torch.rand(1, keys, 8, 4, 4, generator=g).softmax(-1)
    return value, shapes, start, loc, attn


def msda_grid_sample(value, shapes, loc, attn, backward):
    """The grid_sample formulation (what mmcv computes on the CPU), forward (+ autograd bwd)."""
    leaves = [t.detach().requires_grad_(backward) for t in (value, loc, attn)]
    v, lc, at = leaves
    bs, _, heads, C = v.shape
    with torch.set_grad_enabled(backward):
        splits = v.split([int(h * w) for h, w in shapes.tolist()], dim=1)
        grids = 2 * lc - 1
        outs = []
        for lv, (h, w) in enumerate(shapes.tolist()):
            vl = splits[lv].flatten(2).transpose(1, 2).reshape(bs * heads, C, h, w)
            gl = grids[:, :, :, lv].transpose(1, 2).flatten(0, 1)
            outs.append(torch.nn.functional.grid_sample(vl, gl, mode="bilinear",
                                                        padding_mode="zeros", align_corners=False))
        a = at.transpose(1, 2).reshape(bs * heads, 1, lc.shape[1], -1)
        out = (torch.stack(outs, dim=-2).flatten(-2) * a).sum(-1).view(bs, heads * C, lc.shape[1])
        if backward:
            out.sum().backward()


def msda_ext(value, shapes, start, loc, attn, backward):
    out = ext.ms_deform_attn_forward(value, shapes, start, loc, attn, im2col_step=64)
    if backward:
        gv, gl, ga = torch.zeros_like(value), torch.zeros_like(loc), torch.zeros_like(attn)
        ext.ms_deform_attn_backward(value, shapes, start, loc, attn, torch.ones_like(out), gv, gl,
                                    ga, im2col_step=64)


def against_mmcv(args, rows):
    """Rows of bench/compat_vs_mmcv.py, run in args.mmcv_python on the wheel's extracted _ext."""
    found = sorted(glob.glob(os.path.expanduser(args.mmcv_wheel)))
    if not found:
        print("no mmcv wheel matches %s: skipped the mmcv anchors" % args.mmcv_wheel)
        return
    with tempfile.TemporaryDirectory(prefix="bench-mmcv-") as tmp:
        with zipfile.ZipFile(found[-1]) as zf:
            so = [n for n in zf.namelist() if n.startswith("mmcv/_ext")]
            zf.extract(so[0], tmp)
        cmd = [args.mmcv_python, "-u", os.path.join(HERE, "compat_vs_mmcv.py"), os.path.join(tmp, so[0]),
               "--reps", str(args.reps), "--threads", str(torch.get_num_threads())]
        if args.mmcv_only:
            cmd += ["--only", args.mmcv_only]
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        print("against %s's compiled CPU kernels, in %s:" % (os.path.basename(found[-1]), args.mmcv_python))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        for line in proc.stdout:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#":
                print("  " + parts[1])
            elif len(parts) == 4:
                rows.append((parts[0], parts[1], float(parts[2]), float(parts[3])))
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mmcv-python", help="an interpreter with the torch the mmcv wheel was built for")
    ap.add_argument("--mmcv-wheel", default="~/.cache/envdoctor-build-wheels/mmcv-2.2.0/*/mmcv-2.2.0-*.whl")
    ap.add_argument("--mmcv-only", default="", help="comma-separated case-name prefixes for the mmcv part")
    ap.add_argument("--no-torchvision", action="store_true", help="only the mmcv part")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = Rows()
    if args.mmcv_python:
        against_mmcv(args, rows)
    if args.no_torchvision:
        return
    import torchvision

    g = torch.Generator().manual_seed(0)
    print("torch %s, torchvision %s, %d threads" % (torch.__version__, torchvision.__version__,
                                                    torch.get_num_threads()))
    print("%-44s %-42s %9s %7s" % ("case", "variant", "time s", "ratio"))

    boxes, scores = nms_inputs(g)
    anchor = best(lambda: torchvision.ops.nms(boxes, scores, 0.7), args.reps)
    rows.append(("nms 5000 boxes, iou 0.7", "torchvision.ops.nms (anchor)", anchor, anchor))
    for name in ("", "torch"):
        t = best(with_backend(name, lambda: ext.nms(boxes, scores, iou_threshold=0.7, offset=0)),
                 args.reps)
        rows.append(("", "compat" + ("-" + name if name else ""), t, anchor))
    t = best(lambda: ext.nms(boxes, scores, iou_threshold=0.7, offset=1), args.reps)
    rows.append(("", "compat offset=1 (pure path)", t, anchor))

    x, rois = roi_inputs(g)
    for backward in (False, True):
        label = "roi_align 1000 RoIs 256x200x336 7x7 avg" + (" fwd+bwd" if backward else " fwd")
        anchor = best(lambda bw=backward: tv_roi(x, rois, bw), args.reps)
        rows.append((label, "torchvision.ops.roi_align (anchor)", anchor, anchor))
        for name in ("", "torch"):
            t = best(with_backend(name, lambda bw=backward: roi_run(x, rois, 1, bw)), args.reps)
            rows.append(("", "compat" + ("-" + name if name else ""), t, anchor))
        t = best(lambda bw=backward: roi_run(x, rois, 0, bw), args.reps)
        rows.append(("", "compat max mode (pure path)", t, anchor))

    logits = torch.randn(120000, 80, generator=g)
    labels = torch.randint(0, 81, (120000,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, 81)[:, :80].float()
    anchor = best(lambda: torchvision.ops.sigmoid_focal_loss(logits, onehot, 0.25, 2.0, "none"),
                  args.reps)
    rows.append(("focal loss 120000x80 fwd", "torchvision.ops.sigmoid_focal_loss (ref)", anchor,
                 anchor))
    out = torch.empty_like(logits)
    t = best(lambda: ext.sigmoid_focal_loss_forward(logits, labels, logits.new_empty(0), out,
                                                    gamma=2.0, alpha=0.25), args.reps)
    rows.append(("", "compat forward kernel", t, anchor))
    t = best(lambda: ext.sigmoid_focal_loss_backward(logits, labels, logits.new_empty(0), out,
                                                     gamma=2.0, alpha=0.25), args.reps)
    rows.append(("", "compat backward kernel", t, anchor))

    value, shapes, start, loc, attn = msda_inputs(g)
    for backward in (False, True):
        label = "ms_deform_attn DETR encoder" + (" fwd+bwd" if backward else " fwd")
        anchor = best(lambda bw=backward: msda_grid_sample(value, shapes, loc, attn, bw),
                      args.reps)
        rows.append((label, "grid_sample formulation (mmcv on CPU)", anchor, anchor))
        t = best(lambda bw=backward: msda_ext(value, shapes, start, loc, attn, bw), args.reps)
        rows.append(("", "compat kernels", t, anchor))

    rb = torch.cat([torch.rand(2000, 2, generator=g) * 1000, torch.rand(2000, 2, generator=g) * 80 + 4,
                    (torch.rand(2000, 1, generator=g) - 0.5) * 3.14], 1)
    ious = rb.new_zeros(2000 * 2000)
    t = best(lambda: ext.box_iou_rotated(rb, rb, ious, mode_flag=0, aligned=False), args.reps)
    rows.append(("box_iou_rotated 2000x2000", "compat (no anchor: absolute)", t, t))



if __name__ == "__main__":
    main()
