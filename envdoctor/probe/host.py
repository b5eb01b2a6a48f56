"""Facts about the machine: OS, architecture, C/C++ runtime, CPU and memory."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Optional

from envdoctor.facts import Host

_GLIBCXX = re.compile(rb"GLIBCXX_(\d+)\.(\d+)(?:\.(\d+))?")


def newest_glibcxx(path: str) -> Optional[str]:
    """The newest GLIBCXX_x.y.z version string that a libstdc++ file defines."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    best = max(
        ((int(a), int(b), int(c or 0)) for a, b, c in _GLIBCXX.findall(data)),
        default=None,
    )
    return None if best is None else "%d.%d.%d" % best


def find_libstdcxx(prefix: Optional[str]) -> Optional[str]:
    """The libstdc++ the target would load: its own prefix first (conda ships one), then ld.so.cache."""
    if prefix:
        cand = Path(prefix) / "lib" / "libstdc++.so.6"
        if cand.exists():
            return str(cand.resolve())
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if "libstdc++.so.6 " in line and "=>" in line:
            return str(Path(line.split("=>", 1)[1].strip()).resolve())
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        cand = Path(d) / "libstdc++.so.6"
        if cand.exists():
            return str(cand.resolve())
    return None


def os_version() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return platform.release()
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else platform.release()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_host(target_prefix: Optional[str]) -> Host:
    host = Host(os=platform.system(), arch=platform.machine(), cpu=cpu_name(), cpu_count=os.cpu_count())
    if host.os == "Linux":
        host.os_version = os_version()
        libc, ver = platform.libc_ver()
        host.glibc = ver or None
        host.libstdcxx = find_libstdcxx(target_prefix)
        if host.libstdcxx:
            host.glibcxx = newest_glibcxx(host.libstdcxx)
    else:
        host.os_version = platform.version()
    try:
        import psutil

        host.memory_total_mib = int(psutil.virtual_memory().total // (1024 * 1024))
    except Exception:  # psutil missing or unsupported platform: memory is a nice-to-have
        host.memory_total_mib = None
    return host
