"""Real OpenMMLab models on the compat layer, on both mmcv lines (2.1.0/2.2.0 and 1.7.2).

mmdet 3.3 on mmcv-lite 2.1.0 and 2.2.0; mmdet 2.28 and mmrotate 0.3.4 on mmcv 1.7.2.

Each env (tests/envs.py: `mmdet33`, `mmdet33-mmcv22`, `mmdet228`, `mmrotate034`; no compiled mmcv._ext
in any; `mmdet33-mmcv22` with mmdet's import-time cap `mmcv < 2.2.0` raised by a declared patch) gets the compat
layer enabled; one subprocess per env then builds the models from the configs shipped inside the
mmdet wheel with random weights (nothing downloaded), runs one training step and one inference on
a 128x128 image (tests/compat/models/*.py), and counts the calls into the stand-in `mmcv._ext`.
A model that ran without the kernels it needs, or whose kernels raised, fails here.

What CPU runs call (measured, and asserted below): the two-stage detectors call nms and
roi_align forward/backward, the DCN config the three deform_conv kernels, Oriented R-CNN the
rotated IoU, RoIAlign and NMS kernels. RetinaNet's focal
loss and Deformable DETR's attention take pure-PyTorch paths on CPU (mmdet/mmcv use the
kernels only for CUDA tensors); their training step is repeated with that path routed through
the `_ext` kernels and must give the same loss and gradients. `basicvsr_align` is a
BasicVSR++/E2FGVI-style network on mmcv's ModulatedDeformConv2d (models/alignment.py).
See docs/compat-models.md.
"""

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import site_packages
from envdoctor.compat import hook
from tests.conftest import real_env

SCRIPTS = Path(__file__).resolve().parent / "models"

NMS = {"nms"}
ROI = {"roi_align_forward"}
ROI_GRAD = {"roi_align_forward", "roi_align_backward"}
DCN = {"deform_conv_forward"}
DCN_GRAD = {"deform_conv_forward", "deform_conv_backward_input", "deform_conv_backward_parameters"}

# model -> (kernels its training step must call, kernels its inference must call,
#           kernels the routed training step must call)
EXPECTED = {
    "faster_rcnn": (NMS | ROI_GRAD, NMS | ROI, None),
    "retinanet": (set(), NMS, {"sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward"}),
    "mask_rcnn": (NMS | ROI_GRAD, NMS | ROI, None),
    "faster_rcnn_dcn": (NMS | ROI_GRAD | DCN_GRAD, NMS | ROI | DCN, None),
    "deformable_detr": (set(), set(), {"ms_deform_attn_forward", "ms_deform_attn_backward"}),
    "basicvsr_align": ({"modulated_deform_conv_forward", "modulated_deform_conv_backward"},
                       {"modulated_deform_conv_forward"}, None),
    # mmrotate 0.3.4: horizontal NMS on the oriented RPN's proposals, rotated IoU in the R-CNN
    # assigner, rotated RoIAlign; rotated NMS on the final boxes
    "oriented_rcnn": (NMS | {"box_iou_rotated", "roi_align_rotated_forward", "roi_align_rotated_backward"},
                      NMS | {"roi_align_rotated_forward", "nms_rotated"}, None),
}
MMDET3 = ["faster_rcnn", "retinanet", "mask_rcnn", "faster_rcnn_dcn", "deformable_detr", "basicvsr_align"]
ENVS = {
    "mmdet33": ("mmdet3_models.py", MMDET3),
    # mmcv-lite 2.2.0: mmdet 3.3.0's import-time cap raised by a patch of the env (tests/envs.py)
    "mmdet33-mmcv22": ("mmdet3_models.py", MMDET3),
    "mmdet228": ("mmdet2_models.py", MMDET3),  # the same models on mmdet 2.28 / mmcv 1.7.2
    "mmrotate034": ("mmrotate0_models.py", ["oriented_rcnn"]),
}


def _run(venv, args, env_extra=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("ENVDOCTOR_COMPAT", None)
    env.update(env_extra or {})
    return subprocess.run([str(venv / "bin" / "python"), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=1800,
                          cwd=str(SCRIPTS))


_RESULTS: dict = {}


def results_for(name):
    """{model: facts} from one run of the env's model script on the compat layer (once per env)."""
    if name in _RESULTS:
        return _RESULTS[name]
    venv = real_env(name)
    site = site_packages(venv)
    hook.disable(site)
    created = hook.enable(site)
    try:
        # precondition: without the stand-in mmdet's models do not even import
        off = _run(venv, ["-c", "import mmdet.models"], {"ENVDOCTOR_COMPAT": "0"})
        assert off.returncode != 0 and "No module named 'mmcv._ext'" in off.stderr, off.stderr[-2000:]
        script, models = ENVS[name]
        p = _run(venv, [script, *models])
    finally:
        hook.disable(site)
    assert not any(path.exists() for path in created)
    assert p.returncode == 0, p.stderr[-6000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    _RESULTS[name] = json.loads(line[len("RESULT "):])
    return _RESULTS[name]


def test_mmdet33_mmcv22_runs_mmcv_2_2_0_through_a_visible_patch_of_mmdets_cap():
    """The env's one deviation from what pip installed: mmdet/__init__.py's mmcv cap, raised to < 2.3.0."""
    from tests import envs

    venv = real_env("mmdet33-mmcv22")
    (patch,) = envs.SPECS["mmdet33-mmcv22"].patches
    init = site_packages(venv) / patch.path
    text = init.read_text()
    assert patch.new in text and patch.old not in text
    # pip's RECORD still holds the wheel's hash: the edit is visible to `pip` and to envdoctor
    record = next(site_packages(venv).glob("mmdet-3.3.0.dist-info/RECORD")).read_text()
    row = next(ln for ln in record.splitlines() if ln.startswith(patch.path + ","))
    digest = base64.urlsafe_b64encode(hashlib.sha256(init.read_bytes()).digest()).rstrip(b"=").decode()
    assert row.split(",")[1] != "sha256=" + digest
    p = _run(venv, ["-c", "import mmcv, mmdet; print(mmcv.__version__, mmdet.mmcv_maximum_version)"],
             {"ENVDOCTOR_COMPAT": "0"})
    assert p.returncode == 0 and p.stdout.split() == ["2.2.0", "2.3.0"], p.stderr[-2000:]


@pytest.mark.parametrize("env,model", [(e, m) for e in sorted(ENVS) for m in ENVS[e][1]])
def test_model_trains_and_infers_on_the_compat_kernels(env, model):
    results = results_for(env)
    facts = results[model]
    train, infer, routed = EXPECTED[model]
    # exactly these kernels: none missing, and none that the model would not call on CPU
    assert set(facts["train_calls"]) == train, facts["train_calls"]
    assert set(facts["infer_calls"]) == infer, facts["infer_calls"]
    assert all(n > 0 for n in facts["train_calls"].values())
    # one training step: a finite loss, finite gradients, and the optimizer moved those parameters
    assert facts["loss"] == facts["loss"] and 0 < facts["loss"] < 1e4, facts["loss"]
    assert facts["grads_finite"]
    assert facts["params_with_grad"] >= 8, facts
    # a gradient below half an ulp of its parameter may leave it unchanged (one of RetinaNet's 71)
    assert facts["params_moved"] >= facts["params_with_grad"] - 1, facts
    assert facts["pred_finite"]
    if model == "basicvsr_align":
        assert facts["offset_head_grad"] > 0 and facts["pred_shape"] == [1, 4, 3, 48, 48], facts
    if routed is not None:
        assert set(facts["routed_calls"]) == routed, facts["routed_calls"]
        assert facts["routed_same_params"]
        assert facts["routed_loss_diff"] <= 1e-5, facts["routed_loss_diff"]
        assert facts["routed_grad_diff"] <= 1e-4, facts["routed_grad_diff"]


@pytest.mark.parametrize("model", [m for m in MMDET3 if m != "basicvsr_align"])
def test_mmdet33_models_train_the_same_on_mmcv_lite_2_1_0_and_2_2_0(model):
    """Same weights, data and torch: mmcv-lite 2.2.0's Python code on the compat kernels changes nothing."""
    old, new = results_for("mmdet33")[model], results_for("mmdet33-mmcv22")[model]
    assert abs(new["loss"] - old["loss"]) <= 1e-5 * abs(old["loss"]), (old["loss"], new["loss"])
    assert (new["params_with_grad"], new["pred_count"]) == (old["params_with_grad"], old["pred_count"])
