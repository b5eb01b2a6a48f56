"""Shared by the model scripts in this folder (they run inside a test env, not under pytest).

* :func:`count_ext_calls` counts the calls into the compat stand-in for ``mmcv._ext``:
  mmcv's Python code looks each kernel up on the module at call time
  (``ext_module.nms(...)``), so wrapping the module's attributes counts every call,
  whichever ``mmcv.ops`` module makes it.
* On CPU, mmdet's FocalLoss and mmcv's MultiScaleDeformableAttention take pure-PyTorch paths
  and call no kernel (they use the kernels only for CUDA tensors). The ``route_*`` functions
  send those paths through the ``_ext`` kernels instead -- what the model runs on a GPU -- so
  a model test can compare both routes from the same weights and data.
"""

import collections
import copy
import time

import torch


def count_ext_calls():
    """Wrap every served kernel of ``mmcv._ext``; returns the live Counter (name -> calls)."""
    import mmcv._ext as ext

    if not getattr(ext, "__envdoctor_compat__", False):
        raise SystemExit("mmcv._ext is not envdoctor's compat stand-in: %r" % (ext,))
    counts = collections.Counter()
    for name in ext.IMPLEMENTED:
        real = getattr(ext, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        setattr(ext, name, counted)
    return counts


def no_pretrained(node):
    """Drop every ``init_cfg=dict(type='Pretrained', ...)`` (it would download weights)."""
    if isinstance(node, dict):
        init = node.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            node["init_cfg"] = None
        if "pretrained" in node:
            node["pretrained"] = None
        for value in node.values():
            no_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            no_pretrained(value)


def lighten(node):
    """Fewer region proposals (at most 200 before NMS, 100 kept) to keep the tests' CPU time small; score_thr 0."""
    if isinstance(node, dict):
        # random weights score every class below the usual 0.05: without this the final NMS
        # (and Mask R-CNN's mask branch) would see no box at all
        if isinstance(node.get("score_thr"), float):
            node["score_thr"] = 0.0
        for key, cap in (("nms_pre", 200), ("max_per_img", 100)):
            if isinstance(node.get(key), int) and node[key] > cap:
                node[key] = cap
        for value in node.values():
            lighten(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            lighten(value)


def quiet():
    """mmengine/mmcv log every initialised parameter at INFO: keep the output readable."""
    import logging

    for name in ("mmengine", "mmcv", "mmdet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # mmengine's loggers live in its own registry, not logging's
        from mmengine.logging import MMLogger

        MMLogger.get_current_instance().setLevel(logging.ERROR)
    except ImportError:  # mmcv 1.x: no mmengine
        pass


def route_focal_loss_through_ext():
    """mmdet's FocalLoss CPU path (py_sigmoid_focal_loss on one-hot targets) -> the _ext kernel."""
    from mmdet.models.losses import focal_loss as fl

    def via_ext(pred, target, weight=None, gamma=2.0, alpha=0.25, reduction="mean", avg_factor=None):
        background = torch.full_like(target[:, 0], pred.size(1))
        labels = torch.where(target.sum(1) > 0, target.argmax(1), background)
        return fl.sigmoid_focal_loss(pred, labels.long(), weight, gamma, alpha, reduction, avg_factor)

    shipped = fl.py_sigmoid_focal_loss
    fl.py_sigmoid_focal_loss = via_ext
    return lambda: setattr(fl, "py_sigmoid_focal_loss", shipped)


def route_msda_through_ext():
    """mmcv's MultiScaleDeformableAttention CPU path -> MultiScaleDeformableAttnFunction (_ext)."""
    from mmcv.ops import multi_scale_deform_attn as msda

    def via_ext(value, spatial_shapes, sampling_locations, attention_weights):
        sizes = spatial_shapes.prod(1)
        start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        return msda.MultiScaleDeformableAttnFunction.apply(
            value, spatial_shapes, start, sampling_locations, attention_weights, 64)

    shipped = msda.multi_scale_deformable_attn_pytorch
    msda.multi_scale_deformable_attn_pytorch = via_ext
    return lambda: setattr(msda, "multi_scale_deformable_attn_pytorch", shipped)


ROUTES = {"retinanet": route_focal_loss_through_ext, "deformable_detr": route_msda_through_ext}


def off_the_kinks(model):
    """Move Deformable DETR's sampling points off integer pixel coordinates.

    At init its sampling offsets are whole pixels from pixel-centre reference points, so
    ``loc * size - 0.5`` lands on integers, where bilinear interpolation has a kink: the
    location gradient there is one-sided, and grid_sample and the kernel pick different
    sides (~1e-3 relative in the offset gradients at init). Off the kinks both are the
    same derivative. A fixed pseudo-random shift in (-0.25, 0.25) of a pixel does it.
    """
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("sampling_offsets.bias"):
                p.add_(torch.rand(p.shape, generator=g) * 0.5 - 0.25)


def grad_summary(loss, grads, params_before, model):
    """Facts about one training step: loss, finite gradients, parameters that moved."""
    return {
        "loss": loss,
        "grads_finite": all(bool(torch.isfinite(g).all()) for g in grads.values()),
        "params_with_grad": sum(1 for g in grads.values() if g.abs().sum() > 0),
        "params_moved": sum(1 for n, p in model.named_parameters() if not torch.equal(p, params_before[n])),
        "params_not_moved": [n for n, p in model.named_parameters()
                             if n in grads and torch.equal(p, params_before[n])][:5],
    }


def route_diff(loss, grads, loss_ext, grads_ext):
    """Relative differences between the shipped route and the _ext route."""
    scale = max(g.abs().max().item() for g in grads.values())
    return {
        "routed_loss_diff": abs(loss_ext - loss) / max(abs(loss), 1e-12),
        "routed_grad_diff": max((grads[n] - grads_ext[n]).abs().max().item() for n in grads) / scale,
        "routed_same_params": sorted(grads) == sorted(grads_ext),
    }


def run_model(name, config, model_cfg, build, train_step, predict, data, calls):
    """Build (random weights), one training step, the routed step where there is one, one inference.

    The sequence both mmdet APIs share; they differ only in how a model is built from its
    config (``build``: mmdet 2's ``build_detector`` / mmdet 3's ``MODELS.build``), in how a
    training step feeds the data (``train_step(model, data, seed) -> (loss, grads)``) and in what
    an inference returns (``predict(model, data) -> facts``, run under ``no_grad`` in eval mode).
    """
    no_pretrained(model_cfg)
    lighten(model_cfg)
    torch.manual_seed(0)
    model = build(model_cfg)
    model.init_weights()
    out = {"config": config}
    if name == "deformable_detr":
        off_the_kinks(model)
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
    t0 = time.perf_counter()
    with torch.no_grad():
        facts = predict(model, data)
    out["infer_seconds"] = round(time.perf_counter() - t0, 3)
    out["infer_calls"] = dict(calls)
    out.update(facts)
    return out
