"""Host and CUDA toolkit facts, read from this real machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envdoctor.probe.host import find_libstdcxx, newest_glibcxx, parse_ldconfig, parse_meminfo, probe_host
from envdoctor.probe.toolkit import parse_nvcc_version, probe_toolkit

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux facts")


@linux
def test_host_facts_match_the_machine():
    psutil = pytest.importorskip("psutil")
    h = probe_host(None)
    assert h.os == "Linux" and h.arch == platform.machine() and h.cpu_count == os.cpu_count()
    assert h.glibc == os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    assert h.memory_total_mib == psutil.virtual_memory().total // (1024 * 1024)
    assert h.libstdcxx and Path(h.libstdcxx).exists() and h.libstdcxx_source == "ld.so.cache"
    assert h.glibcxx and h.glibcxx.startswith("3.4.")
    assert h.os_version  # PRETTY_NAME of /etc/os-release


@linux
def test_memory_without_psutil_comes_from_proc(monkeypatch):
    real = probe_host(None).memory_total_mib
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` now raises ImportError
    assert probe_host(None).memory_total_mib == parse_meminfo(Path("/proc/meminfo").read_text())
    assert abs(probe_host(None).memory_total_mib - real) <= 1


@linux
def test_newest_glibcxx_of_the_system_libstdcxx():
    path, _ = find_libstdcxx(None)
    data = Path(path).read_bytes()
    ver = newest_glibcxx(path)
    assert f"GLIBCXX_{ver}".encode() in data
    major, minor, patch = (int(x) for x in ver.split("."))
    assert f"GLIBCXX_{major}.{minor}.{patch + 1}".encode() not in data


@linux
def test_libstdcxx_of_the_target_prefix_wins(tmp_path, monkeypatch):
    """A conda env ships its own libstdc++ in PREFIX/lib; the target loads that one."""
    system, _ = find_libstdcxx(None)
    (tmp_path / "lib").mkdir()
    shutil.copy2(system, tmp_path / "lib" / "libstdc++.so.6")
    assert find_libstdcxx(str(tmp_path)) == (str(tmp_path / "lib" / "libstdc++.so.6"), "target prefix")
    other = tmp_path / "ld"
    other.mkdir()
    shutil.copy2(system, other / "libstdc++.so.6")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(other))
    assert find_libstdcxx(None) == (str(other / "libstdc++.so.6"), "LD_LIBRARY_PATH")


@linux
def test_parse_real_ldconfig_output():
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    found = parse_ldconfig(out, arch="x86-64" if platform.machine() == "x86_64" else platform.machine())
    assert found and Path(found).name == "libstdc++.so.6" and Path(found).exists()
    assert parse_ldconfig("") is None


def test_parse_nvcc_version():
    text = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n"
            "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0\n")
    assert parse_nvcc_version(text) == "13.0"
    assert parse_nvcc_version("garbage") is None


@pytest.fixture
def nvcc() -> Path:
    found = shutil.which("nvcc")
    if found is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine")
    return Path(found)


def test_toolkit_from_path(nvcc, monkeypatch):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    tk = probe_toolkit()
    real = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    assert tk.nvcc == str(nvcc) and tk.version == parse_nvcc_version(real)
    assert tk.cuda_home == str(nvcc.resolve().parent.parent) and tk.cuda_home_source == "nvcc"


def test_toolkit_from_cuda_home(nvcc, monkeypatch):
    home = nvcc.resolve().parent.parent
    monkeypatch.setenv("CUDA_HOME", str(home))
    monkeypatch.setenv("PATH", "/nonexistent")
    tk = probe_toolkit()
    assert tk.cuda_home == str(home) and tk.cuda_home_source == "CUDA_HOME"
    assert tk.nvcc == str(home / "bin" / "nvcc") and tk.version


def test_no_toolkit(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    tk = probe_toolkit(default_home=str(tmp_path / "no-cuda"))
    assert tk.nvcc is None and tk.version is None and tk.cuda_home is None
