"""Fixtures for the compat tests: real venvs with mmcv's own Python code (no compiled ops).

The venvs come from tests/envs.py (cached, built under a lock): `mmcv-lite` (torch 2.13.0 +
mmcv-lite 2.2.0) and `mmcv172-tv291` (torch 2.14.1 + torchvision 0.29.1 + mmcv 1.7.2 built
without ops; mmcv 1.x's mmcv.ops imports torchvision, whose ops must load). A failed build
fails the test in CI and skips it elsewhere (tests/conftest.py:real_env).
"""

import subprocess
from pathlib import Path

import pytest

from tests.conftest import real_env


def site_packages(venv):
    out = subprocess.check_output(
        [str(Path(venv) / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        universal_newlines=True)
    return Path(out.strip())


@pytest.fixture(scope="session")
def mmcv2_env():
    return real_env("mmcv-lite")


@pytest.fixture(scope="session")
def mmcv1_env():
    return real_env("mmcv172-tv291")


@pytest.fixture(autouse=True)
def _fresh_backend_choice():
    """ops reads ENVDOCTOR_COMPAT_BACKEND once per process: a test that sets it (with
    monkeypatch) must not leave its choice to the tests after it."""
    yield
    import sys

    ops = sys.modules.get("envdoctor.compat.ops")
    if ops is not None:
        ops.reset_backend_choice()
