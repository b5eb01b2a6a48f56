"""A real mmrotate 0.x detector (mmdet 2.28, mmcv 1.7.2) on the compat layer (runs inside a test env).

Usage: python mmrotate0_models.py [oriented_rcnn]; prints one ``RESULT {json}`` line.

Oriented R-CNN from the config shipped inside the mmrotate wheel (``mmrotate/.mim/configs``),
random weights, one training step and one inference through harness.run_model (mmdet 2's API), on a
128x128 image with two rotated ground-truth boxes (cx, cy, w, h, angle in radians, le90).
"""

import json
import os
import sys

from harness import count_ext_calls, quiet, run_model
from mmdet2_models import batch, predict, train_step

MODELS = {"oriented_rcnn": "oriented_rcnn/oriented_rcnn_r50_fpn_1x_dota_le90.py"}
BOXES = ((40.0, 50.0, 60.0, 30.0, 0.5), (90.0, 70.0, 50.0, 40.0, -0.3))


def main(names):
    calls = count_ext_calls()
    quiet()
    import mmcv
    import mmrotate
    from mmrotate.models import build_detector

    res = {}
    for name in names:
        cfg = mmcv.Config.fromfile(os.path.join(os.path.dirname(mmrotate.__file__), ".mim", "configs", MODELS[name]))
        res[name] = run_model(name, MODELS[name], cfg.model, build_detector, train_step, predict,
                              batch(BOXES), calls)
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
