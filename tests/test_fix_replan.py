"""A verified fix is not planned again, and two fixes at once make one transaction (issue 10, section 2).

Real: a copy of the cached torch 2.13 + mmcv-lite 2.2.0 venv and the real compat layer.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import run_cli
from tests.envs import site_packages
from tests.conftest import journals
from tests.test_fix_recover import light_clone, start_fix
from tests.wheelfactory import hash_of, tree_listing


def _compat_or_skip() -> None:
    try:
        from envdoctor.compat import hook  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"envdoctor.compat.hook is not importable ({type(exc).__name__}: {exc})")


def test_two_concurrent_compat_fixes_make_one_transaction_and_then_nothing_to_do(tmp_path):
    _compat_or_skip()
    env = light_clone("mmcv-lite", tmp_path / "env")
    site = site_packages(env)
    h = hash_of(tree_listing(site))
    # the first holds the lock (paused before it installs); the second starts meanwhile and must wait
    first = start_fix(env, "--apply", "--yes", "--strategy", "compat", pause="backup=3")
    deadline = time.time() + 120
    while not journals(env):
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = start_fix(env, "--apply", "--yes", "--strategy", "compat", pause="")
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, out1 + err1
    assert "Result: verified" in out1
    assert second.returncode == 0, out2 + err2
    assert "waiting for another envdoctor fix" in out2
    assert "nothing to fix" in out2 and "[compat]" not in out2  # re-probed after the wait
    assert [j["state"] for j in journals(env)] == ["committed"]

    # a verified compat fix is not "mmcv._ext: missing": nothing to plan, exit 0
    dry = run_cli("fix", "--python", str(env))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "nothing to fix" in dry.stdout and "missing" not in dry.stdout
    again = run_cli("fix", "--python", str(env), "--apply", "--yes", "--strategy", "compat")
    assert again.returncode == 0 and "nothing to fix" in again.stdout
    assert len(journals(env)) == 1

    # one --undo restores everything
    undo = run_cli("fix", "--python", str(env), "--undo")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert hash_of(tree_listing(site)) == h
    nothing = run_cli("fix", "--python", str(env), "--undo")
    assert nothing.returncode == 2 and "nothing to undo" in nothing.stderr
    assert subprocess.run([str(env / "bin" / "python"), "-c", "import _envdoctor_compat"],
                          capture_output=True).returncode != 0
