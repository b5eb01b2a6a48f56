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
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib")


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


def parse_ldconfig(text: str, soname: str = "libstdc++.so.6", arch: str = "x86-64") -> Optional[str]:
    """The path `ldconfig -p` gives for a soname, preferring entries of this architecture."""
    first = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(soname + " ") or "=>" not in line:
            continue
        path = line.split("=>", 1)[1].strip()
        if arch in line:
            return path
        first = first or path
    return first


def find_libstdcxx(prefix: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """The libstdc++ the target would load, in the dynamic loader's order: the target's own prefix
    (conda ships one, and its python has an RPATH to it), LD_LIBRARY_PATH, ld.so.cache, default dirs."""
    if prefix:
        cand = Path(prefix) / "lib" / "libstdc++.so.6"
        if cand.exists():
            return str(cand.resolve()), "target prefix"
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d and (Path(d) / "libstdc++.so.6").exists():
            return str((Path(d) / "libstdc++.so.6").resolve()), "LD_LIBRARY_PATH"
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    machine = platform.machine()
    found = parse_ldconfig(out, arch="x86-64" if machine == "x86_64" else machine)
    if found:
        return str(Path(found).resolve()), "ld.so.cache"
    for d in _LIB_DIRS:
        cand = Path(d) / "libstdc++.so.6"
        if cand.exists():
            return str(cand.resolve()), "default directory"
    return None, None


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


def parse_meminfo(text: str) -> Optional[int]:
    """MemTotal from /proc/meminfo, in MiB."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(m.group(1)) // 1024 if m else None


def memory_total_mib() -> Optional[int]:
    try:
        import psutil  # a dependency; the /proc fallback covers a broken install

        return int(psutil.virtual_memory().total // (1024 * 1024))
    except Exception:
        pass
    try:
        return parse_meminfo(Path("/proc/meminfo").read_text())
    except OSError:
        return None


def probe_host(target_prefix: Optional[str]) -> Host:
    host = Host(os=platform.system(), arch=platform.machine(), cpu=cpu_name(), cpu_count=os.cpu_count())
    if host.os == "Linux":
        host.os_version = os_version()
        _libc, ver = platform.libc_ver()
        host.glibc = ver or None
        host.libstdcxx, host.libstdcxx_source = find_libstdcxx(target_prefix)
        if host.libstdcxx:
            host.glibcxx = newest_glibcxx(host.libstdcxx)
    elif host.os == "Windows":
        host.os_version = platform.version()
    else:
        host.os_version = platform.mac_ver()[0] or platform.version()
    host.memory_total_mib = memory_total_mib()
    return host
