"""Locally built mmcv wheels in pip's wheel cache (a static fact; judges nothing).

pip caches a wheel it built from an sdist under <cache>/wheels/<hash path>/, keyed
by the sdist's URL only, so a later `pip install mmcv==X` reuses it whatever torch
is installed. Stdlib only. Result goes to report.pip_cache.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

_WHEEL = re.compile(r"^(?P<name>mmcv|mmcv_full)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$",
                    re.I)
MAX_ENTRIES = 50000  # directories walked: the cache can be large, this stays well under a second


def cache_dir(environ: Optional[dict[str, str]] = None, platform: str = sys.platform,
              home: Optional[str] = None) -> Optional[Path]:
    """pip's cache directory for this user (PIP_CACHE_DIR, else the platform default pip uses)."""
    env = os.environ if environ is None else environ
    if env.get("PIP_NO_CACHE_DIR", "").lower() in ("1", "true", "yes", "on"):
        return None
    if env.get("PIP_CACHE_DIR"):
        return Path(env["PIP_CACHE_DIR"]).expanduser()
    home_dir = Path(home) if home else Path.home()
    if platform.startswith("win"):
        # joined the Windows way whatever this machine is (a Windows target's facts read elsewhere)
        base = env.get("LOCALAPPDATA")
        return Path(ntpath.join(base, "pip", "Cache")) if base else None
    if platform == "darwin":
        return home_dir / "Library" / "Caches" / "pip"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home_dir / ".cache") / "pip"


def _origin(directory: str) -> Optional[str]:
    try:
        with open(os.path.join(directory, "origin.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None


def probe_pip_cache(directory: Optional[Path] = None) -> dict[str, Any]:
    root = directory if directory is not None else cache_dir()
    out: dict[str, Any] = {"cache_dir": str(root) if root else None, "wheels": [], "complete": True}
    if root is None:
        return out
    wheels_dir = root / "wheels"
    if not wheels_dir.is_dir():
        return out
    seen = 0
    for dirpath, _dirnames, filenames in os.walk(wheels_dir):
        seen += 1
        if seen > MAX_ENTRIES:
            out["complete"] = False
            break
        for name in filenames:
            m = _WHEEL.match(name)
            if not m:
                continue
            out["wheels"].append({
                "file": name, "package": m.group("name").replace("_", "-").lower(), "version": m.group("version"),
                "python_tag": m.group("py"), "platform_tag": m.group("plat"), "path": os.path.join(dirpath, name),
                "origin_url": _origin(dirpath),
                "mtime": int(os.path.getmtime(os.path.join(dirpath, name))),
            })
    return out
