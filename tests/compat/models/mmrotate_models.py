"""A real mmrotate 1.x detector on the compat layer (runs inside a test env, not under pytest).

Usage: python mmrotate_models.py [oriented_rcnn]; prints one ``RESULT {json}`` line.

Oriented R-CNN from the config shipped inside the mmrotate wheel (``mmrotate/.mim/configs``),
random weights, one training step and one inference through mmdet3_models.run_model, on a
128x128 image with two rotated ground-truth boxes (cx, cy, w, h, angle in radians, le90).
"""

import json
import os
import sys

import torch

from harness import count_ext_calls, quiet
from mmdet3_models import SIZE, run_model

MODELS = {"oriented_rcnn": "oriented_rcnn/oriented-rcnn-le90_r50_fpn_1x_dota.py"}


def batch():
    from mmengine.structures import InstanceData

    from mmdet.structures import DetDataSample
    from mmrotate.structures.bbox import RotatedBoxes

    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                         scale_factor=(1.0, 1.0)))
    gt = InstanceData()
    gt.bboxes = RotatedBoxes(torch.tensor([[40.0, 50.0, 60.0, 30.0, 0.5], [90.0, 70.0, 50.0, 40.0, -0.3]]))
    gt.labels = torch.tensor([1, 5])
    sample.gt_instances = gt
    return dict(inputs=[img], data_samples=[sample])


def main(names):
    calls = count_ext_calls()
    quiet()
    import mmrotate
    from mmengine.config import Config

    from mmrotate.registry import MODELS as REGISTRY
    from mmrotate.utils import register_all_modules

    register_all_modules()
    res = {}
    for name in names:
        path = os.path.join(os.path.dirname(mmrotate.__file__), ".mim", "configs", MODELS[name])
        res[name] = run_model(name, MODELS[name], Config.fromfile(path).model, REGISTRY, batch(), calls)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
