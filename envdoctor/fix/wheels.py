"""Wheel files: build a small pure wheel from a directory, and read what a wheel will install where.

`build_wheel` is how the compat layer becomes a distribution pip can see and remove
(`pip uninstall envdoctor-compat`); the tests' wheel factory uses it too. `wheel_targets`
maps a wheel's members to the paths pip will write, so that the transaction can back up
whatever an install would overwrite. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from email.parser import Parser
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional, TypedDict

# Fixed timestamp: the same input gives the same wheel bytes (zip needs >= 1980).
_EPOCH = (2020, 1, 1, 0, 0, 0)


def norm_name(name: str) -> str:
    """PEP 503 normalised project name: `MMCV_Lite` -> `mmcv-lite`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_part(name: str) -> str:
    """The distribution part of a wheel filename / dist-info directory: `mmcv-lite` -> `mmcv_lite`."""
    return re.sub(r"[-_.]+", "_", name)


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _walk_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            full = Path(dirpath) / f
            out.append((full.relative_to(root).as_posix(), full))
    return out


def build_wheel(staging: Path, name: str, version: str, out_dir: Path, *, tag: str = "py3-none-any",
                purelib: bool = True, requires: Iterable[str] = (), summary: str = "",
                extra_files: Optional[dict[str, bytes]] = None) -> Path:
    """Zip every file under `staging` (except __pycache__) into `<name>-<version>-<tag>.whl` in `out_dir`,
    with METADATA, WHEEL and a RECORD of sha256 digests. `extra_files` adds members by archive path."""
    dist = wheel_name_part(name)
    info = f"{dist}-{version}.dist-info"
    members: list[tuple[str, bytes, int]] = []
    # a .pth file at the root last: installers write in the archive's order, and one written before the package it
    # imports would make every Python started meanwhile (or after a kill half-way) print an error
    for rel, full in sorted(_walk_files(staging), key=lambda m: "/" not in m[0] and m[0].endswith(".pth")):
        members.append((rel, full.read_bytes(), full.stat().st_mode & 0o777))
    for rel, data in sorted((extra_files or {}).items()):
        members.append((rel, data, 0o644))
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        meta.append(f"Summary: {summary}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    members.append((f"{info}/METADATA", ("\n".join(meta) + "\n").encode(), 0o644))
    wheel_meta = (f"Wheel-Version: 1.0\nGenerator: envdoctor\nRoot-Is-Purelib: {'true' if purelib else 'false'}\n"
                  f"Tag: {tag}\n")
    members.append((f"{info}/WHEEL", wheel_meta.encode(), 0o644))
    record_lines = [f"{rel},{record_hash(data)},{len(data)}" for rel, data, _ in members]
    record_lines.append(f"{info}/RECORD,,")
    members.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode(), 0o644))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-{version}-{tag}.whl"
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, data, mode in members:
            zi = zipfile.ZipInfo(rel, date_time=_EPOCH)
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    os.replace(tmp, path)
    return path


def parse_wheel_filename(filename: str) -> tuple[str, str]:
    """(normalised name, version) from `name-version(-build)?-py-abi-plat.whl`."""
    base = os.path.basename(filename)
    if not base.endswith(".whl"):
        raise ValueError(f"not a wheel: {base}")
    parts = base[:-4].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"not a wheel filename: {base}")
    return norm_name(parts[0]), parts[1]


def _dist_info_dir(names: Iterable[str]) -> Optional[str]:
    for n in names:
        top = n.split("/", 1)[0]
        if top.endswith(".dist-info"):
            return top
    return None


class WheelMeta(TypedDict):
    name: str
    version: str
    requires: list[str]  # Requires-Dist lines, markers included
    purelib: bool
    scripts: list[str]  # console and gui script names
    members: list[str]  # archive members, directories left out
    dist_info: str  # the .dist-info directory inside the archive


def wheel_metadata(path: Path) -> WheelMeta:
    """Name, version, Requires-Dist, purelib flag, console scripts and members of a wheel."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        info = _dist_info_dir(names)
        if info is None:
            raise ValueError(f"{path.name}: no .dist-info directory")
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8", "replace"))
        wheel = Parser().parsestr(zf.read(f"{info}/WHEEL").decode("utf-8", "replace"))
        scripts: list[str] = []
        if f"{info}/entry_points.txt" in names:
            section = ""
            for line in zf.read(f"{info}/entry_points.txt").decode("utf-8", "replace").splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]").strip()
                elif "=" in line and section in ("console_scripts", "gui_scripts"):
                    scripts.append(line.split("=", 1)[0].strip())
    return {
        "name": meta.get("Name", ""),
        "version": meta.get("Version", ""),
        "requires": meta.get_all("Requires-Dist") or [],
        "purelib": (wheel.get("Root-Is-Purelib", "true").strip().lower() == "true"),
        "scripts": scripts,
        "members": [n for n in names if not n.endswith("/")],
        "dist_info": info,
    }


def script_files(names: list[str], windows: bool) -> list[str]:
    """The files pip writes for console/gui scripts: `name` on POSIX, the launcher `name.exe` on Windows."""
    return [n + ".exe" if windows else n for n in names]


def wheel_targets(path: Path, scheme: dict[str, str], windows: bool = False) -> list[Path]:
    """The paths an install of this wheel writes (members, console scripts; not pip's own .pyc/RECORD extras).
    `scheme` holds the target's sysconfig paths: purelib, platlib, scripts, data, include; `windows`: the
    target is Windows (its scripts are .exe launchers)."""
    meta = wheel_metadata(path)
    root = Path(scheme["purelib"] if meta["purelib"] else scheme["platlib"])
    dist_info = str(meta["dist_info"])
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    out: list[Path] = []
    for member in meta["members"]:
        p = PurePosixPath(member)
        if p.parts and p.parts[0] == data_dir and len(p.parts) >= 3:
            key = p.parts[1]
            base = scheme.get({"headers": "include"}.get(key, key))
            if base is None:
                continue
            rest = Path(*p.parts[2:])
            if key == "headers":
                rest = Path(str(meta["name"])) / rest
            out.append(Path(base) / rest)
        else:
            out.append(root / Path(*p.parts))
    for script in script_files(list(meta["scripts"]), windows):
        out.append(Path(scheme["scripts"]) / script)
    return out
