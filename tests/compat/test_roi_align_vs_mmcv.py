"""The compat roi_align against mmcv's own compiled CPU kernels: the real mmcv 2.2.0 wheel built here
(tests/mmcv_build.py), its `_ext` loaded alone in the torch 2.13 env it was built for, the same calls on
both (avg and max, aligned or not, adaptive and fixed grids, float32 and float64, forward and backward):
every output, argmax and input gradient bit-equal."""

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.envs import get_env, python_in
from tests.mmcv_build import ENV, ensure

pytestmark = pytest.mark.after_mmcv_build
ROOT = Path(__file__).resolve().parents[2]


def test_roi_align_bit_equal_to_mmcv_compiled_cpu_kernels(tmp_path: Path) -> None:
    wheel, _, _ = ensure()
    with zipfile.ZipFile(wheel) as zf:
        [so] = [n for n in zf.namelist() if n.startswith("mmcv/_ext")]
        zf.extract(so, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("ENVDOCTOR_COMPAT",)}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([str(python_in(get_env(ENV))), str(Path(__file__).with_name("roi_align_vs_mmcv_worker.py")),
                        str(tmp_path / so)], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(res) == 24
    differ = {k: v for k, v in res.items() if not all(v)}
    assert not differ, differ
