"""Real mmdet 2.x models (mmcv 1.x) on the compat layer (runs inside a test env, not under pytest).

Usage: python mmdet2_models.py NAME...   (NAME from MODELS below, or basicvsr_align); prints one ``RESULT {json}`` line.

The mmdet 3.x script's counterpart for mmdet 2.28 (mmcv 1.7.2's API: ``build_detector``,
``img_metas``, ``return_loss``): configs from ``mmdet/.mim/configs``, random weights, one
training step (loss, backward, SGD step), one inference, ``_ext`` calls counted per phase;
RetinaNet's training step again with the focal loss routed through the ``_ext`` kernel.
"""

import copy
import json
import os
import sys
import time

import numpy as np
import torch

from alignment import run_alignment
from harness import ROUTES, count_ext_calls, grad_summary, lighten, no_pretrained, quiet, route_diff

MODELS = {
    "faster_rcnn": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "faster_rcnn_dcn": "dcn/faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco.py",
}
ALIGNMENT = "basicvsr_align"  # alignment.py: not an mmdet model, run in the same process
SIZE = 128


def batch(boxes=((10.0, 12.0, 70.0, 90.0), (40.0, 30.0, 120.0, 100.0))):
    g = torch.Generator().manual_seed(1)
    img = torch.randn(1, 3, SIZE, SIZE, generator=g)
    shape = (SIZE, SIZE, 3)
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=(SIZE, SIZE),
                scale_factor=np.ones(4, dtype=np.float32), flip=False, flip_direction=None)
    return img, meta, [torch.tensor(boxes)], [torch.tensor([1, 5])]


def train_step(model, data, seed):
    img, meta, boxes, labels = data
    torch.manual_seed(seed)
    model.train()
    losses = model(img=img, img_metas=[meta], gt_bboxes=boxes, gt_labels=labels, return_loss=True)
    loss, _ = model._parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def run(name, calls):
    import mmcv
    import mmdet
    from mmdet.models import build_detector

    cfg = mmcv.Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", MODELS[name]))
    return run_model(name, MODELS[name], cfg.model, build_detector, batch(), calls)


def run_model(name, config, model_cfg, build, data, calls):
    """Build (random weights), one training step, the routed step where there is one, one inference."""
    no_pretrained(model_cfg)
    lighten(model_cfg)
    torch.manual_seed(0)
    model = build(model_cfg)
    model.init_weights()
    out = {"config": config}
    routed = copy.deepcopy(model) if name in ROUTES else None

    calls.clear()
    t0 = time.perf_counter()
    loss, grads = train_step(model, data, seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    out["train_seconds"] = round(time.perf_counter() - t0, 3)
    out["train_calls"] = dict(calls)
    out.update(grad_summary(loss, grads, before, model))

    if routed is not None:
        undo = ROUTES[name]()
        calls.clear()
        try:
            loss_ext, grads_ext = train_step(routed, data, seed=2)
        finally:
            undo()
        out["routed_calls"] = dict(calls)
        out.update(route_diff(loss, grads, loss_ext, grads_ext))

    calls.clear()
    model.eval()
    img, meta, _, _ = data
    t0 = time.perf_counter()
    with torch.no_grad():
        results = model(img=[img], img_metas=[[meta]], return_loss=False, rescale=True)
    out["infer_seconds"] = round(time.perf_counter() - t0, 3)
    out["infer_calls"] = dict(calls)
    per_class = results[0]
    out["pred_classes"] = len(per_class)
    out["pred_count"] = int(sum(len(a) for a in per_class))
    out["pred_finite"] = bool(all(np.isfinite(a).all() for a in per_class))
    return out


def main(names):
    calls = count_ext_calls()
    quiet()
    res = {}
    for name in names:
        res[name] = run_alignment(calls) if name == ALIGNMENT else run(name, calls)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or [*MODELS, ALIGNMENT])
