"""Facts a source build depends on beyond the report: usable cores, available memory and disk,
the C++ compiler. Judges nothing; stdlib only."""

from __future__ import annotations

import ntpath
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


# The x64 developer environment of a Visual Studio install (what the "x64 Native Tools" prompt runs).
VCVARS = ("VC", "Auxiliary", "Build", "vcvars64.bat")


def vcvars_script(install: str) -> str:
    """vcvars64.bat of the Visual Studio install vswhere reported (a Windows path on every host)."""
    return ntpath.join(install, *VCVARS)


def parse_set_output(text: str) -> dict[str, str]:
    """cmd.exe's `set` listing as an environment. Names are upper-cased: Windows treats them without case,
    and a dict holding both `Path` and `PATH` would leave it to chance which one a child sees. cmd's hidden
    per-drive directories (`=C:=C:\\…`) are not variables and are dropped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name and not name.startswith("=") and " " not in name.strip():
            env[name.strip().upper()] = value
    return env


def msvc_build_env(install: str, set_output: str) -> Optional[dict[str, str]]:
    """The variables a build must run with, from the `set` listing taken after vcvars64.bat; None when the
    script did not set up a compiler (no INCLUDE/LIB: a broken or partial install)."""
    env = parse_set_output(set_output)
    if not env.get("INCLUDE") or not env.get("LIB") or not env.get("PATH"):
        return None
    keep = {k: env[k] for k in env if k in MSVC_VARS or k.startswith(("VS", "VC", "WINDOWSSDK", "UCRT"))}
    # torch's cpp_extension and setuptools then take cl.exe from this environment instead of looking for
    # Visual Studio themselves (and warn when the variable is missing while a VC environment is active)
    keep["DISTUTILS_USE_SDK"] = "1"
    keep["MSSDK"] = "1"
    return keep


MSVC_VARS = ("PATH", "INCLUDE", "LIB", "LIBPATH", "PLATFORM", "EXTENSION_SDK_DIRECTORIES", "FRAMEWORKDIR",
             "FRAMEWORKDIR64", "FRAMEWORKVERSION", "FRAMEWORKVERSION64", "NETFXSDKDIR", "COMMANDPROMPTTYPE",
             "DEVENVDIR")


def msvc_environment(install: str, timeout: float = 120.0) -> Optional[dict[str, str]]:
    """Windows only (not run on Windows yet): run vcvars64.bat in cmd.exe and read the environment it leaves.
    None when there is no such script or it fails."""
    script = vcvars_script(install)
    if os.name != "nt" or not os.path.isfile(script):
        return None
    try:
        proc = subprocess.run(["cmd.exe", "/d", "/s", "/c", f'"call "{script}" >nul 2>&1 && set"'],
                              capture_output=True, text=True, timeout=timeout, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    return msvc_build_env(install, proc.stdout) if proc.returncode == 0 else None


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
