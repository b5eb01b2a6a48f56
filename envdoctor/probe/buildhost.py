"""Facts a source build depends on beyond the report: usable cores, available memory and disk,
the C++ compiler. Judges nothing; stdlib only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional


@dataclass
class BuildHost:
    cores: int
    mem_available_mib: Optional[int]
    disk_free_mib: Optional[int]
    cxx: Optional[str]  # path of the C++ compiler a build would use ($CXX, else c++)
    cxx_version: Optional[str]  # "GCC 12.2.0" | "clang 17.0.6" | None
    msvc: Optional[str] = None  # Windows: cl.exe on PATH, else the Visual Studio install vswhere reports


def _mem_available_mib() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def compiler_version(cxx: str) -> Optional[str]:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    m = re.search(r"clang version (\d+(?:\.\d+)*)", first)
    if m:
        return f"clang {m.group(1)}"
    m = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s*$", first)
    if m and "Free Software Foundation" in out:
        return f"GCC {m.group(1)}"
    return first.strip()[:80] or None


# Visual Studio's locator ships at this fixed place with every VS 2017+ installer; the component id is the
# MSVC x64/x86 build tools one (Microsoft's vswhere documentation).
VSWHERE = ("Microsoft Visual Studio", "Installer", "vswhere.exe")
VC_TOOLS = "Microsoft.VisualStudio.Component.VC.Tools.x86.x64"


def find_msvc() -> Optional[str]:
    cl = shutil.which("cl")
    if cl:
        return cl
    vswhere = os.path.join(os.environ.get("ProgramFiles(x86)", r"C:\Program Files (x86)"), *VSWHERE)
    if not os.path.isfile(vswhere):
        return None
    try:
        out = subprocess.run([vswhere, "-latest", "-products", "*", "-requires", VC_TOOLS, "-property",
                              "installationPath"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def probe_build_host(work_dir: str = ".") -> BuildHost:
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use, not what the machine has
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        disk = shutil.disk_usage(work_dir).free // (1 << 20)
    except OSError:
        disk = None
    if os.name == "nt":  # torch's cpp_extension compiles with MSVC there, whatever c++ is on PATH
        msvc = find_msvc()
        return BuildHost(cores=cores, mem_available_mib=None, disk_free_mib=disk, cxx=msvc,
                         cxx_version="MSVC" if msvc else None, msvc=msvc)
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    return BuildHost(cores=cores, mem_available_mib=_mem_available_mib(), disk_free_mib=disk, cxx=cxx,
                     cxx_version=compiler_version(cxx) if cxx else None)
