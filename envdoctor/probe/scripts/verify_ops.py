"""Run a few of mmcv's compiled ops in the target, after a build: does the real `mmcv._ext` work?

Runs inside the *target* interpreter (it has torch and mmcv by now). Records, never judges:
which file `mmcv._ext` is, the device used, and per op whether it ran and whether its result
equals the value known in closed form. The caller sets ENVDOCTOR_COMPAT=0, so the compat layer
cannot stand in for a library that does not load.

Usage: verify_ops.py OUT_JSON DEVICE OP...
  DEVICE: auto (the GPU when torch sees one) | cpu;  OP: nms | roi_align | modulated_deform_conv2d
"""
import json
import os
import sys
import traceback


def _write(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def op_nms(torch, dev):
    from mmcv.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32, device=dev)
    scores = torch.tensor([0.9, 0.8, 0.7], device=dev)
    _dets, keep = nms(boxes, scores, 0.5)  # IoU of the first two is 0.81: the second is suppressed
    got = sorted(int(i) for i in keep.cpu())
    return got == [0, 2], "keep %s (expected [0, 2])" % got


def op_roi_align(torch, dev):
    from mmcv.ops import roi_align

    # f(y, x) = 10 y + x is linear: bilinear sampling is exact, so every bin is f at its sample mean
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    feat = (10 * ys + xs).reshape(1, 1, 4, 4).to(dev)
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]], device=dev)
    out = roi_align(feat, rois, (2, 2), 1.0, 2, "avg", False).reshape(2, 2).cpu()
    want = torch.tensor([[8.25, 9.75], [23.25, 24.75]])
    return bool(torch.allclose(out, want, atol=1e-5)), "output %s (expected %s)" % (out.tolist(), want.tolist())


def op_modulated_deform_conv2d(torch, dev):
    from mmcv.ops import modulated_deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 7, generator=g).to(dev)
    w = torch.randn(3, 4, 3, 3, generator=g).to(dev)
    b = torch.randn(3, generator=g).to(dev)
    offset = torch.zeros(1, 18, 6, 7, device=dev)
    mask = torch.full((1, 9, 6, 7), 0.5, device=dev)
    # zero offsets sample the regular grid: mask 0.5 halves the convolution, the bias is added after
    out = modulated_deform_conv2d(x, offset, mask, w, b, 1, 1, 1, 1, 1)
    want = 0.5 * torch.nn.functional.conv2d(x, w, None, 1, 1) + b.reshape(1, 3, 1, 1)
    err = float((out - want).abs().max())
    return err < 1e-4, "max |error| %.3g against 0.5 * conv2d + bias" % err


OPS = {"nms": op_nms, "roi_align": op_roi_align, "modulated_deform_conv2d": op_modulated_deform_conv2d}


def main():
    out_path, device, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
    result = {"ext_file": None, "device": None, "ops": {}, "error": None}
    _write(out_path, result)
    try:
        import torch
        import mmcv._ext as ext

        result["ext_file"] = getattr(ext, "__file__", None)
        result["device"] = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    except Exception as exc:  # noqa: BLE001 - recorded for the caller
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
        _write(out_path, result)
        return
    _write(out_path, result)
    for name in ops:
        fn = OPS.get(name)
        if fn is None:
            result["ops"][name] = {"ok": False, "detail": "unknown op"}
            continue
        try:
            ok, detail = fn(torch, result["device"])
            result["ops"][name] = {"ok": bool(ok), "detail": detail}
        except Exception as exc:  # noqa: BLE001 - recorded for the caller
            last = traceback.format_exc().strip().splitlines()[-1]
            result["ops"][name] = {"ok": False, "detail": "%s: %s" % (type(exc).__name__, exc), "last": last}
        _write(out_path, result)


if __name__ == "__main__":
    main()
