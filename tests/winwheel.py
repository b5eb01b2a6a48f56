"""A real Windows torch wheel (MSVC-built DLLs with torch-sized export tables), cached outside the repo.

tests/run.sh downloads it once (`pip download torch==2.5.1 --platform win_amd64 ...`) into
``$ENVDOCTOR_TEST_WHEELS`` (default ~/.cache/envdoctor-test-wheels); the tests never fetch it. Members
are extracted once beside it. Without the wheel a test is skipped here and fails in CI.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI

WHEEL = "torch-2.5.1-cp312-cp312-win_amd64.whl"
CACHE = Path(os.environ.get("ENVDOCTOR_TEST_WHEELS") or Path.home() / ".cache" / "envdoctor-test-wheels")


def member(name: str) -> Path:
    """The wheel's file `name` (e.g. "torch/lib/c10.dll"), extracted once into the cache."""
    wheel = CACHE / WHEEL
    if not wheel.is_file():
        msg = f"{wheel} missing (tests/run.sh downloads it)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    out = CACHE / "extracted-2.5.1" / name
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.part")
        with zipfile.ZipFile(wheel) as z, z.open(name) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, out)
    return out
