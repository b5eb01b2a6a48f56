"""Real mmdet 3.x models on the compat layer (runs inside a test env, not under pytest).

Usage: python mmdet3_models.py NAME...   (NAME from MODELS below, or basicvsr_align); prints one ``RESULT {json}`` line.

Each model is built from the config shipped inside the mmdet wheel (``mmdet/.mim/configs``)
with random weights (every ``Pretrained`` init dropped: nothing is downloaded), then gets one
training step (loss, backward, SGD step) and one inference on a small random image with two
ground-truth objects. The calls into ``mmcv._ext`` are counted per phase.

For RetinaNet and Deformable DETR, whose CPU paths call no kernel for the focal loss and the
deformable attention (see harness.py), the training step is run a second time from the same
weights and data with those paths routed through the ``_ext`` kernels; losses and gradients
of the two runs are compared.
"""

import copy
import json
import os
import sys

import numpy as np
import torch

from alignment import run_alignment
from harness import count_ext_calls, quiet, run_model

MODELS = {
    "faster_rcnn": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "mask_rcnn": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "faster_rcnn_dcn": "dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py",
    "deformable_detr": "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py",
}
ALIGNMENT = "basicvsr_align"  # alignment.py: not an mmdet model, run in the same process
SIZE = 128


def batch(with_masks):
    from mmengine.structures import InstanceData

    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks

    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                         scale_factor=(1.0, 1.0)))
    gt = InstanceData()
    boxes = [[10.0, 12.0, 70.0, 90.0], [40.0, 30.0, 120.0, 100.0]]
    gt.bboxes = torch.tensor(boxes)
    gt.labels = torch.tensor([1, 5])
    if with_masks:
        masks = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            masks[i, int(y0) + 5:int(y1) - 5, int(x0) + 5:int(x1) - 5] = 1
        gt.masks = BitmapMasks(masks, SIZE, SIZE)
    sample.gt_instances = gt
    return dict(inputs=[img], data_samples=[sample])


def train_step(model, data, seed):
    torch.manual_seed(seed)
    model.train()
    prepared = model.data_preprocessor(copy.deepcopy(data), True)
    losses = model(**prepared, mode="loss")
    loss, _ = model.parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def predict(model, data):
    prepared = model.data_preprocessor(copy.deepcopy(data), False)
    pred = model(**prepared, mode="predict")[0].pred_instances
    boxes = getattr(pred.bboxes, "tensor", pred.bboxes)  # mmrotate: RotatedBoxes
    return {"pred_fields": sorted(pred.keys()), "pred_count": len(pred),
            "pred_finite": bool(torch.isfinite(boxes).all()) if len(pred) else True}


def run(name, calls):
    import mmdet
    from mmengine.config import Config

    from mmdet.registry import MODELS as REGISTRY

    cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", MODELS[name]))
    return run_model(name, MODELS[name], cfg.model, REGISTRY.build, train_step, predict,
                     batch(with_masks=name == "mask_rcnn"), calls)


def main(names):
    calls = count_ext_calls()
    quiet()
    from mmdet.utils import register_all_modules

    register_all_modules()
    res = {}
    for name in names:
        res[name] = run_alignment(calls) if name == ALIGNMENT else run(name, calls)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or [*MODELS, ALIGNMENT])
