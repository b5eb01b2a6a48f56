"""envdoctor's own cache of built wheels, keyed by everything that makes one valid.

pip's wheel cache keys a wheel built from an sdist by the sdist's URL alone, so a later install
against another torch reuses it and fails with undefined symbols (research/testbed.md). Here the
key is the mmcv version and every fact of the torch it was compiled against; a wheel is found
again only for an environment where it loads. Entries are written whole (a temporary directory
renamed into place), so a killed build never leaves a half entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from envdoctor.build.spec import BuildSpec
from envdoctor.filehash import sha256_file

KEY_FIELDS = ("package", "version", "torch_version", "torch_git", "torch_cuda", "cxx11_abi", "python_tag",
              "platform_tag", "device", "arch_list")


def cache_root(environ: Optional[dict[str, str]] = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("ENVDOCTOR_BUILD_CACHE"):
        return Path(env["ENVDOCTOR_BUILD_CACHE"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "envdoctor-build-wheels"


def cache_key(spec: BuildSpec) -> dict[str, Any]:
    key = {name: getattr(spec, name) for name in KEY_FIELDS}
    key["arch_list"] = list(spec.arch_list) if spec.device == "cuda" else []
    return key


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def entry_dir(spec: BuildSpec, root: Optional[Path] = None) -> Path:
    return (root or cache_root()) / f"{spec.package}-{spec.version}" / key_digest(cache_key(spec))


def lookup(spec: BuildSpec, root: Optional[Path] = None) -> Optional[Path]:
    """The cached wheel for exactly this spec, if its key and checksum still match."""
    d = entry_dir(spec, root)
    try:
        meta = json.loads((d / "entry.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wheel = d / str(meta.get("wheel", ""))
    if meta.get("key") != cache_key(spec) or not wheel.is_file() or sha256_file(wheel) != meta.get("sha256"):
        return None
    return wheel


def store(spec: BuildSpec, wheel: Path, log: Optional[Path] = None, root: Optional[Path] = None,
          seconds: Optional[float] = None) -> Path:
    """Put a built wheel (and its build log) into the cache; the cached wheel's path."""
    d = entry_dir(spec, root)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
    try:
        shutil.copy2(wheel, tmp / wheel.name)
        if log is not None and log.is_file():
            shutil.copy2(log, tmp / "build.log")
        meta = {"key": cache_key(spec), "wheel": wheel.name, "sha256": sha256_file(tmp / wheel.name),
                "build_seconds": seconds}
        (tmp / "entry.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return d / wheel.name
