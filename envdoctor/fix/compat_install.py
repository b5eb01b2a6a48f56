"""Package the compat layer as a tiny wheel, `envdoctor-compat`, so its activation is a normal
distribution: `pip list` shows it, `pip uninstall envdoctor-compat` removes it, and envdoctor
does not need to be installed in the target (pipx installs work).

The wheel's contents come from `envdoctor.compat.hook.enable(staging_dir)`, run on an empty
staging directory: the compat layer decides what it needs (its package copy and the `.pth`
line), this module only wraps that in a wheel. ENVDOCTOR_COMPAT_SOURCE=<dir> (a prepared
staging directory) replaces that step; the tests use it to exercise the mechanics with a
stand-in layer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from envdoctor import __version__
from envdoctor.fix.wheels import build_wheel

COMPAT_DIST = "envdoctor-compat"
SOURCE_ENV = "ENVDOCTOR_COMPAT_SOURCE"


def unavailable_reason() -> Optional[str]:
    """None when this envdoctor can build the compat wheel, else why not."""
    src = os.environ.get(SOURCE_ENV)
    if src:
        return None if Path(src).is_dir() else f"{SOURCE_ENV}={src} is not a directory"
    try:
        from envdoctor.compat import hook  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means: no compat layer here
        return f"this envdoctor has no compat layer (envdoctor.compat.hook: {type(exc).__name__}: {exc})"
    if not hasattr(hook, "enable"):
        return "this envdoctor's compat layer has no enable()"
    return None


def stage(staging: Path) -> list[Path]:
    src = os.environ.get(SOURCE_ENV)
    if src:
        shutil.copytree(src, staging, dirs_exist_ok=True)
        return sorted(staging.iterdir())
    from envdoctor.compat import hook

    return [Path(p) for p in hook.enable(str(staging))]


def build_compat_wheel(out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="envdoctor-compat-") as tmp:
        staging = Path(tmp) / "site"
        staging.mkdir()
        stage(staging)
        return build_wheel(staging, COMPAT_DIST, __version__, out_dir,
                           summary="envdoctor compat layer: serves mmcv._ext (deformable conv, nms, roi_align, ...) "
                                   "when the real one cannot load; remove with `pip uninstall envdoctor-compat`")


def wheel_filename() -> str:
    return f"envdoctor_compat-{__version__}-py3-none-any.whl"
