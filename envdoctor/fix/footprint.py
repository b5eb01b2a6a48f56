"""What a fix touches, read from the target's files: the roots a backup covers (site-packages, scripts,
the user scheme's when the fix goes there) and an installed distribution's top-level paths (its RECORD)."""

from __future__ import annotations

import os
from pathlib import Path

from envdoctor.fix import backup as bk
from envdoctor.fix.wheels import norm_name
from envdoctor.probe import TargetInfo


def roots_for(info: TargetInfo, state: Path, user: bool = False) -> bk.Roots:
    """What the backup covers: site-packages and scripts, and the user site's too when the fix touches it."""
    rec: list[str] = []
    flat: list[str] = []
    schemes = [info.paths] + ([info.user.get("paths") or {}] if user else [])
    for paths in schemes:
        for key in ("purelib", "platlib"):
            p = os.path.normpath(paths.get(key, "")) if paths.get(key) else ""
            if p and p not in rec and os.path.isdir(p):
                rec.append(p)
        if paths.get("scripts") and os.path.normpath(paths["scripts"]) not in flat:
            flat.append(os.path.normpath(paths["scripts"]))
    return bk.Roots(tuple(rec), tuple(flat), (), (str(state),))


def _dist_info_dirs(location: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listdir(location)
    except OSError:
        return out
    for n in names:
        if n.endswith(".dist-info"):
            out.setdefault(norm_name(n[: -len(".dist-info")].rsplit("-", 1)[0]), os.path.join(location, n))
    return out


def top_path(path: str, roots: bk.Roots) -> tuple[str, bool]:
    """(what to back up for this file, whether it lies outside the scanned roots)."""
    for r in roots.recursive:
        if path.startswith(r + os.sep):
            first = os.path.relpath(path, r).split(os.sep, 1)[0]
            return os.path.join(r, first), False
    for r in roots.flat:
        if os.path.dirname(path) == r:
            return path, False
    return path, True


def dist_paths(name: str, roots: bk.Roots) -> tuple[list[str], list[str]]:
    """Top-level trees/files of an installed distribution (from its RECORD) and paths outside the roots."""
    tops: list[str] = []
    outside: list[str] = []
    for root in roots.recursive:
        info = _dist_info_dirs(root).get(norm_name(name))
        if info is None:
            continue
        tops.append(info)
        record = os.path.join(info, "RECORD")
        try:
            lines = Path(record).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
            top_level = os.path.join(info, "top_level.txt")
            if os.path.exists(top_level):
                lines = [t.strip() + "/" for t in Path(top_level).read_text().splitlines() if t.strip()]
        for line in lines:
            rel = line.split(",", 1)[0]
            if not rel:
                continue
            path = os.path.normpath(os.path.join(root, rel))
            top, out = top_path(path, roots)
            (outside if out else tops).append(top)
            if path.endswith(".py"):  # python's own byte-code twin, if RECORD forgot it
                tops.append(top_path(os.path.join(os.path.dirname(path), "__pycache__"), roots)[0])
    return sorted(set(tops)), sorted(set(outside))
