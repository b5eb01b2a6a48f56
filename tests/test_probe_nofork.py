"""Load probes without fork, as on Windows and macOS (issue 12 item 10).

Real: the `--no-fork` flag end to end through `envdoctor check` on the cached torch 2.13 +
torchvision 0.29.1 env, the concurrency bound on real probe processes, and a real hang inside
`import torch` (a stub torch that sleeps) caught by the probe's own watchdog with its stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from envdoctor.probe.loads import LoadRun, parallel_limit, stage_results
from envdoctor.probe.target import Target
from tests.conftest import real_env, run_cli, validate_report
from tests.envs import python_in

GiB = 1024 ** 3


def test_check_no_fork_end_to_end():
    env = real_env("torch213-tv291")
    proc = run_cli("check", "--no-fork", "--format", "json", "--python", str(python_in(env)))
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    probes = data["load_probes"]
    assert probes["fork"] is False and 1 <= probes["parallel"] <= 3
    comps = data["components"]
    assert comps["torch"]["load"]["status"] == "ok"
    # torchvision 0.29.1 needs torch 2.14: its import fails for real in its own process, and the direct
    # load of its library names why, as with fork
    assert comps["torchvision"]["load"]["status"] == "import_error"
    assert comps["mmcv"]["load"]["status"] == "missing"


def test_concurrency_follows_free_memory():
    assert parallel_limit(available=64 * GiB) == 3
    assert parallel_limit(available=5 * GiB) == 2
    assert parallel_limit(available=3 * GiB) == 1
    assert parallel_limit(available=0) == 1  # never none: one at a time still answers
    assert 1 <= parallel_limit() <= 3  # psutil's real figure


def _stub_env(tmp_path: Path) -> Path:
    """A venv whose `torch` hangs in its import (a driver call that never returns, say)."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python*/site-packages"))
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text("import time\n\ndef _init_driver():\n    time.sleep(120)\n\n"
                                                "_init_driver()\n")
    (site / "torchvision").mkdir()
    (site / "torchvision" / "__init__.py").write_text("import torch\n")
    return env / "bin" / "python"


def test_one_at_a_time_and_a_hang_in_import_torch_leaves_its_stack(tmp_path):
    python = _stub_env(tmp_path)
    run = LoadRun(Target(str(python), "--python"), timeout=2, fork=False, parallel=1)
    try:
        assert list(run.runs) == ["torch"] and run.pending == ["torchvision", "mmcv"]  # one process so far
    finally:
        outcomes = run.wait()
    assert set(outcomes) == {"torch", "torchvision", "mmcv"}
    for name in ("torch", "torchvision"):
        res = stage_results(outcomes[name])["torch"]
        # the probe's watchdog, not the parent's kill, ended it: the stack shows where the import hung
        assert res.status == "timeout", (name, res)
        assert res.error is not None and "_init_driver" in (res.error.traceback or ""), (name, res.error)
