"""Real mmdet 2.x models (mmcv 1.x) on the compat layer (runs inside a test env, not under pytest).

Usage: python mmdet2_models.py NAME...   (NAME from MODELS below, or basicvsr_align); prints one ``RESULT {json}`` line.

The mmdet 3.x script's counterpart for mmdet 2.28 (mmcv 1.7.2's API: ``build_detector``,
``img_metas``, ``return_loss``): configs from ``mmdet/.mim/configs``, random weights, one
training step (loss, backward, SGD step), one inference, ``_ext`` calls counted per phase
(harness.run_model); RetinaNet's and Deformable DETR's training steps again with the focal loss /
the deformable attention routed through the ``_ext`` kernels.
"""

import json
import os
import sys

import numpy as np
import torch

from alignment import run_alignment
from harness import count_ext_calls, quiet, run_model

MODELS = {
    "faster_rcnn": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "mask_rcnn": "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py",
    "faster_rcnn_dcn": "dcn/faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco.py",
    "deformable_detr": "deformable_detr/deformable_detr_r50_16x2_50e_coco.py",
}
ALIGNMENT = "basicvsr_align"  # alignment.py: not an mmdet model, run in the same process
SIZE = 128
BOXES = ((10.0, 12.0, 70.0, 90.0), (40.0, 30.0, 120.0, 100.0))


def batch(boxes=BOXES, with_masks=False):
    g = torch.Generator().manual_seed(1)
    img = torch.randn(1, 3, SIZE, SIZE, generator=g)
    shape = (SIZE, SIZE, 3)
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=(SIZE, SIZE),
                scale_factor=np.ones(4, dtype=np.float32), flip=False, flip_direction=None)
    extra = {}
    if with_masks:
        from mmdet.core.mask import BitmapMasks

        masks = np.zeros((len(boxes), SIZE, SIZE), dtype=np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            masks[i, int(y0) + 5:int(y1) - 5, int(x0) + 5:int(x1) - 5] = 1
        extra["gt_masks"] = [BitmapMasks(masks, SIZE, SIZE)]
    return dict(img=img, img_metas=[meta], gt_bboxes=[torch.tensor(boxes)], gt_labels=[torch.tensor([1, 5])],
                **extra)


def train_step(model, data, seed):
    torch.manual_seed(seed)
    model.train()
    losses = model(**data, return_loss=True)
    loss, _ = model._parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def predict(model, data):
    results = model(img=[data["img"]], img_metas=[data["img_metas"]], return_loss=False, rescale=True)
    per_class = results[0][0] if isinstance(results[0], tuple) else results[0]  # Mask R-CNN: (boxes, masks)
    out = {"pred_classes": len(per_class), "pred_count": int(sum(len(a) for a in per_class)),
           "pred_finite": bool(all(np.isfinite(a).all() for a in per_class))}
    if isinstance(results[0], tuple):
        out["pred_masks"] = int(sum(len(m) for m in results[0][1]))
    return out


def run(name, calls):
    import mmcv
    import mmdet
    from mmdet.models import build_detector

    cfg = mmcv.Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", MODELS[name]))
    return run_model(name, MODELS[name], cfg.model, build_detector, train_step, predict,
                     batch(with_masks=name == "mask_rcnn"), calls)


def main(names):
    calls = count_ext_calls()
    quiet()
    res = {}
    for name in names:
        res[name] = run_alignment(calls) if name == ALIGNMENT else run(name, calls)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or [*MODELS, ALIGNMENT])
