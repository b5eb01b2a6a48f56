"""Whole-model speed: mmdet 3.3 Faster R-CNN inference on the compat layer vs mmcv's compiled kernels.

Usage:  PYTHONPATH=. python bench/bench_models.py --wheel PATH/mmcv-2.2.0-cp311-cp311-linux_x86_64.whl
        [--size 512] [--reps 3] [--threads N]

Anchor: the same model, weights and image on mmcv 2.2.0's real compiled CPU ops (a wheel built
for torch 2.13 CPU, e.g. by `envdoctor fix --strategy build`, cached under
~/.cache/envdoctor-build-wheels/). Both variants run in ONE env (torch 2.13.0 + that wheel +
mmdet 3.3.0 + the compat layer enabled): `ENVDOCTOR_COMPAT=force` serves the stand-in, the
default loads the real `mmcv._ext`; so only the kernels differ. mmdet 3.3.0 asserts
mmcv < 2.2.0 at import; the worker lowers `mmcv.__version__` before importing mmdet (the
kernels, not that check, are what is measured). Shipped config, random weights (seed 0), the
config's own test-time settings (1000 proposals), one image of --size x --size.
Time = best of --reps calls after one warm-up, per variant in its own process, variants
interleaved (robust on a shared machine). Prints the ratio compat / compiled (goal <= 1.3) and, per
run, the seconds spent inside the two kernels the model calls (roi_align_forward, nms). On a loaded
machine set OMP_WAIT_POLICY=PASSIVE (passed to the workers): libgomp's spinning otherwise turns every
parallel region of the pure-PyTorch kernels into a wait for a descheduled thread.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"


def _time_kernels(ext):
    """Wrap the _ext kernels the model calls: {name: [calls, seconds]} of the current inference."""
    spent = {}
    for name in ("roi_align_forward", "nms"):
        def timed(*a, _fn=getattr(ext, name), _name=name, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                s = spent.setdefault(_name, [0, 0.0])
                s[0] += 1
                s[1] += time.perf_counter() - t0
        setattr(ext, name, timed)  # mmcv.ops looks the kernel up on the module at each call
    return spent


def worker(size, reps, threads):
    import mmcv

    mmcv.__version__ = "2.1.0"  # mmdet 3.3.0's import-time cap (< 2.2.0); see the docstring
    import torch

    import mmcv._ext as ext
    if threads:
        torch.set_num_threads(threads)
    spent = _time_kernels(ext)
    import mmdet
    from mmengine.config import Config

    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", CONFIG))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    from mmdet.structures import DetDataSample

    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    meta = dict(img_id=0, img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0))
    data = dict(inputs=[img], data_samples=[DetDataSample(metainfo=meta)])
    times, kernels = [], []
    with torch.no_grad():
        prepared = model.data_preprocessor(data, False)
        for _ in range(reps + 1):
            spent.clear()
            t0 = time.perf_counter()
            out = model(**prepared, mode="predict")
            times.append(time.perf_counter() - t0)
            kernels.append({k: round(v[1], 3) for k, v in spent.items()})
    pred = out[0].pred_instances
    print("RESULT " + json.dumps({
        "compat": bool(getattr(ext, "__envdoctor_compat__", False)),
        "best": min(times[1:]), "times": times, "detections": len(pred),
        "kernels": kernels[1 + times[1:].index(min(times[1:]))],
        "score_sum": float(pred.scores.sum()) if len(pred) else 0.0,
        "threads": torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True, help="mmcv 2.2.0 wheel with compiled CPU ops (cp311, torch 2.13)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both variants")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: torch's default)")
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(HERE))
    from envdoctor.compat import hook
    from tests import envs

    name = "bench-mmdet33-mmcv220"
    envs.SPECS[name] = envs.EnvSpec(base="torch213", installs=((os.path.abspath(args.wheel), "mmdet==3.3.0"),),
                                    link_base=True, notes="bench only: mmcv 2.2.0 with compiled CPU ops + mmdet 3.3.0")
    t0 = time.perf_counter()
    venv = envs.get_env(name)
    print(f"env {venv} ready in {time.perf_counter() - t0:.1f} s")
    site = envs.site_packages(venv)
    hook.enable(site)
    try:
        best = {"compat": [], "compiled": []}
        for _ in range(args.rounds):
            for variant in ("compiled", "compat"):
                env = dict(os.environ)
                env.pop("PYTHONPATH", None)
                env["ENVDOCTOR_COMPAT"] = "force" if variant == "compat" else "auto"
                p = subprocess.run([str(envs.python_in(venv)), os.path.abspath(__file__), "--worker",
                                    str(args.size), str(args.reps), str(args.threads)],
                                   capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    sys.exit(f"{variant} worker failed:\n{p.stderr[-3000:]}")
                res = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
                if res["compat"] != (variant == "compat"):
                    sys.exit(f"{variant}: mmcv._ext was {'the stand-in' if res['compat'] else 'compiled'}")
                best[variant].append(res["best"])
                print(f"{variant:9s} best {res['best']:.3f} s  runs {[round(t, 3) for t in res['times']]}  "
                      f"detections {res['detections']}  score sum {res['score_sum']:.4f}  "
                      f"threads {res['threads']}  in kernels {res['kernels']}")
    finally:
        hook.disable(site)
    c, k = min(best["compat"]), min(best["compiled"])
    print(f"Faster R-CNN r50-FPN inference, 1x3x{args.size}x{args.size}, CPU: compat {c:.3f} s, "
          f"compiled mmcv 2.2.0 {k:.3f} s, ratio {c / k:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
