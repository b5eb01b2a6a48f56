"""NVIDIA driver, the CUDA version it supports, and the devices.

NVML (nvidia-ml-py) first; then `nvidia-smi`; then /proc/driver/nvidia/version.
"No NVIDIA driver" is a fact, not an error. The parsers are pure functions so
they can be tested on recorded real outputs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from envdoctor.facts import Gpu, GpuDevice

SMI_QUERY = "index,name,compute_cap,memory.total,driver_version"


def cuda_version_from_int(value: int) -> str:
    """NVML/cudaDriverGetVersion encode 12.7 as 12070."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml(nvml: Any = None) -> Gpu:
    """Read the driver through NVML; raises if NVML is unavailable."""
    if nvml is None:
        import pynvml as nvml  # nvidia-ml-py
    nvml.nvmlInit()
    try:
        gpu = Gpu(source="nvml", driver_version=_text(nvml.nvmlSystemGetDriverVersion()))
        try:
            gpu.cuda_driver_version = cuda_version_from_int(int(nvml.nvmlSystemGetCudaDriverVersion_v2()))
        except Exception:
            gpu.cuda_driver_version = cuda_version_from_int(int(nvml.nvmlSystemGetCudaDriverVersion()))
        for i in range(int(nvml.nvmlDeviceGetCount())):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            dev = GpuDevice(index=i, name=_text(nvml.nvmlDeviceGetName(h)))
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                dev.compute_capability = f"{major}.{minor}"
            except Exception:
                pass
            try:
                dev.memory_total_mib = int(nvml.nvmlDeviceGetMemoryInfo(h).total) // (1024 * 1024)
            except Exception:
                pass
            gpu.devices.append(dev)
        return gpu
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def parse_smi_query(csv_text: str) -> tuple[Optional[str], list[GpuDevice]]:
    """Parse `nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader,nounits`."""
    driver = None
    devices = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        idx, name, cap, mem, drv = parts[:5]
        driver = driver or drv
        devices.append(
            GpuDevice(
                index=int(idx),
                name=name,
                compute_capability=cap if re.fullmatch(r"\d+\.\d+", cap) else None,
                memory_total_mib=int(float(mem)) if re.fullmatch(r"[\d.]+", mem) else None,
            )
        )
    return driver, devices


_SMI_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
_SMI_DRIVER = re.compile(r"Driver Version:\s*([\d.]+)")
_PROC = re.compile(r"Kernel Module(?: for [\w_]+)?\s+([\d.]+)")


def parse_smi_header(text: str) -> tuple[Optional[str], Optional[str]]:
    """(driver version, CUDA version) from the banner of plain `nvidia-smi`."""
    d = _SMI_DRIVER.search(text)
    c = _SMI_CUDA.search(text)
    return (d.group(1) if d else None, c.group(1) if c else None)


def parse_proc_version(text: str) -> Optional[str]:
    """Driver version from /proc/driver/nvidia/version ("NVRM version: ... Kernel Module  535.104.05 ...")."""
    m = _PROC.search(text)
    return m.group(1) if m else None


def _run(cmd: list[str], timeout: float = 10) -> Optional[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def probe_gpu() -> Gpu:
    notes: list[str] = []
    try:
        gpu = probe_nvml()
        return gpu
    except Exception as exc:  # NVML absent (no driver), or the binding failed: record why
        notes.append(f"nvml: {type(exc).__name__}: {exc}")
    smi = shutil.which("nvidia-smi")
    if smi:
        out = _run([smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"])
        if out:
            driver, devices = parse_smi_query(out)
            banner = _run([smi]) or ""
            _, cuda = parse_smi_header(banner)
            return Gpu(source="nvidia-smi", driver_version=driver, cuda_driver_version=cuda,
                       devices=devices, notes=notes)
        notes.append("nvidia-smi: failed")
    else:
        notes.append("nvidia-smi: not found")
    proc = Path("/proc/driver/nvidia/version")
    if proc.exists():
        try:
            driver = parse_proc_version(proc.read_text())
        except OSError:
            driver = None
        if driver:
            return Gpu(source="procfs", driver_version=driver, notes=notes)
    return Gpu(source="none", notes=notes)
