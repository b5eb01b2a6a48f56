"""Shared test helpers: real interpreters, the CLI in a subprocess, schema validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
IN_CI = os.environ.get("CI") == "true"


def pyenv_python(minor: str) -> Optional[Path]:
    """The pyenv interpreter for e.g. "3.6", or None."""
    if not PYENV.is_dir():
        return None
    for d in sorted(PYENV.iterdir(), reverse=True):
        if d.name == minor or d.name.startswith(minor + "."):
            exe = d / "bin" / "python"
            if exe.exists():
                return exe
    return None


def need_python(minor: str) -> Path:
    exe = pyenv_python(minor)
    if exe is None:
        if IN_CI:
            pytest.fail(f"Python {minor} is not installed under {PYENV}; CI must have it")
        pytest.skip(f"Python {minor} not installed")
    return exe


def run_cli(*args: str, env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m envdoctor ARGS` in a subprocess, as a user would run it."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("ENVDOCTOR_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "envdoctor", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


def validate_report(data: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(data, SCHEMA)


@pytest.fixture
def validate():
    return validate_report


def journals(env: Path) -> list[dict[str, Any]]:
    """The fix transactions' journals in `env`, oldest first. Tests poll this while a fix runs, and a
    transaction directory exists a moment before its journal does: such a directory is not listed yet."""
    d = env / ".envdoctor" / "txn"
    return [json.loads((p / "journal.json").read_text()) for p in sorted(d.iterdir())
            if (p / "journal.json").exists()] if d.is_dir() else []


def real_env(name: str) -> "Path":
    """A cached real test environment (tests/envs.py); fails in CI, skips locally, if it cannot be built."""
    from tests import envs

    try:
        return envs.get_env(name)
    except Exception as exc:  # noqa: BLE001 - the build's own message says what failed
        if IN_CI:
            pytest.fail(f"test environment {name!r} could not be built: {exc}")
        pytest.skip(f"test environment {name!r} could not be built: {exc}")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "after_mmcv_build: needs the real mmcv build (tests/mmcv_build.py); runs last")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    # a full disk fails many unrelated tests at once: the summary says how much was left at the end
    import shutil
    import tempfile

    parts = []
    for label, path in (("checkout", ROOT), ("temp", Path(tempfile.gettempdir()))):
        try:
            parts.append(f"{label} {shutil.disk_usage(path).free / 2**30:.1f} GiB free")
        except OSError:
            pass
    terminalreporter.write_line("disk at the end: " + ", ".join(parts))


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    # tests/run.sh starts the real mmcv build in the background (when envdoctor's cache is cold): the tests
    # that wait for it run last, so that the rest of the suite overlaps the build instead of waiting for it
    items.sort(key=lambda item: item.get_closest_marker("after_mmcv_build") is not None)
