"""NVIDIA driver, the CUDA version it supports, and the devices.

NVML (nvidia-ml-py) first; then `nvidia-smi`; then /proc/driver/nvidia/version
(and /sys/module/nvidia/version). "No NVIDIA driver" is a fact, not an error.
`probe_nvml` takes the binding as a parameter and the text parsers are pure
functions, so both are tested on recorded real values (tests/data/gpu/).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from envdoctor.facts import Gpu, GpuDevice

SMI_FIELDS = ("index", "name", "compute_cap", "memory.total", "driver_version")
SMI_TIMEOUT = 10.0  # a wedged GPU can make nvidia-smi hang; never wait forever
PROC_VERSION = Path("/proc/driver/nvidia/version")
SYS_VERSION = Path("/sys/module/nvidia/version")


def cuda_version_from_int(value: int) -> str:
    """NVML / cuDriverGetVersion encode 12.2 as 12020 (major*1000 + minor*10)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    # nvidia-ml-py >= 11.515 returns str, older bindings bytes; never slice the value
    # (a driver version like 535.104.05 has three parts)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def probe_nvml(nvml: Any = None) -> Gpu:
    """Read the driver through NVML; raises if NVML is unavailable (no driver, no library)."""
    if nvml is None:
        import pynvml  # nvidia-ml-py

        nvml = pynvml
    nvml.nvmlInit()
    try:
        gpu = Gpu(source="nvml", driver_version=_text(nvml.nvmlSystemGetDriverVersion()))
        try:
            # _v2 asks libcuda itself; v1 may answer a "known supported" number when libcuda is missing
            gpu.cuda_driver_version = cuda_version_from_int(int(nvml.nvmlSystemGetCudaDriverVersion_v2()))
        except Exception as exc:
            gpu.notes.append(f"nvml: nvmlSystemGetCudaDriverVersion_v2: {type(exc).__name__}: {exc}")
            try:
                gpu.cuda_driver_version = cuda_version_from_int(int(nvml.nvmlSystemGetCudaDriverVersion()))
            except Exception as exc2:
                gpu.notes.append(f"nvml: nvmlSystemGetCudaDriverVersion: {type(exc2).__name__}: {exc2}")
        for i in range(int(nvml.nvmlDeviceGetCount())):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            dev = GpuDevice(index=i, name=_text(nvml.nvmlDeviceGetName(h)))
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                dev.compute_capability = f"{int(major)}.{int(minor)}"
            except Exception as exc:
                gpu.notes.append(f"nvml: device {i} compute capability: {type(exc).__name__}: {exc}")
            try:
                dev.memory_total_mib = int(nvml.nvmlDeviceGetMemoryInfo(h).total) // (1024 * 1024)
            except Exception as exc:
                gpu.notes.append(f"nvml: device {i} memory: {type(exc).__name__}: {exc}")
            gpu.devices.append(dev)
        return gpu
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _mib(text: str) -> Optional[int]:
    m = re.fullmatch(r"\s*([\d.]+)\s*(MiB)?\s*", text)
    return int(float(m.group(1))) if m else None


def parse_smi_query(csv_text: str) -> tuple[Optional[str], list[GpuDevice]]:
    """Parse `nvidia-smi --query-gpu=... --format=csv` (with its header line, any field order;
    with or without units), or the same with `noheader,nounits` in SMI_FIELDS order."""
    rows = [r for r in csv.reader(io.StringIO(csv_text.strip()), skipinitialspace=True) if r]
    if not rows:
        return None, []
    header = [h.strip().split(" [")[0] for h in rows[0]]  # "memory.total [MiB]" -> "memory.total"
    if "index" in header or "name" in header:
        body = rows[1:]
    else:
        header, body = list(SMI_FIELDS), rows
    driver = None
    devices: list[GpuDevice] = []
    for row in body:
        rec = dict(zip(header, (c.strip() for c in row)))
        idx = rec.get("index", str(len(devices)))
        if not idx.isdigit():
            continue
        cap = rec.get("compute_cap", "")
        driver = driver or rec.get("driver_version") or None
        devices.append(GpuDevice(
            index=int(idx),
            name=rec.get("name", ""),
            compute_capability=cap if re.fullmatch(r"\d+\.\d+", cap) else None,
            memory_total_mib=_mib(rec.get("memory.total", "")),
        ))
    return driver, devices


_SMI_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
_SMI_DRIVER = re.compile(r"Driver Version:\s*([\d.]+\d)")
_PROC = re.compile(r"Kernel Module(?: for [\w.-]+)?\s+(\d+(?:\.\d+)+)")


def parse_smi_header(text: str) -> tuple[Optional[str], Optional[str]]:
    """(driver version, CUDA version) from the banner of plain `nvidia-smi` (or `nvidia-smi -q`)."""
    d = _SMI_DRIVER.search(text)
    c = _SMI_CUDA.search(text)
    return (d.group(1) if d else None, c.group(1) if c else None)


def parse_proc_version(text: str) -> Optional[str]:
    """Driver version from /proc/driver/nvidia/version, proprietary or open kernel module:
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  384.98  ..." or
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build ..."."""
    m = _PROC.search(text)
    return m.group(1) if m else None


def _run(cmd: list[str], timeout: Optional[float] = None) -> tuple[Optional[int], str]:
    timeout = SMI_TIMEOUT if timeout is None else timeout
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:g} s"
    except OSError as exc:
        return None, str(exc)
    out = (proc.stdout or b"") + (proc.stderr or b"") if proc.returncode else proc.stdout
    return proc.returncode, out.decode("utf-8", "replace")


def probe_smi(smi: str, notes: list[str]) -> Optional[Gpu]:
    fields = list(SMI_FIELDS)
    rc, out = _run([smi, f"--query-gpu={','.join(fields)}", "--format=csv"])
    if rc != 0 and "compute_cap" in out:
        # drivers before ~510 do not know the compute_cap field: ask without it
        notes.append("nvidia-smi: " + out.strip().splitlines()[0][:200] if out.strip() else "nvidia-smi: failed")
        fields.remove("compute_cap")
        rc, out = _run([smi, f"--query-gpu={','.join(fields)}", "--format=csv"])
    if rc != 0:
        notes.append(f"nvidia-smi: exit {rc}: {out.strip()[:200]}")
        return None
    driver, devices = parse_smi_query(out)
    rc, banner = _run([smi])
    _, cuda = parse_smi_header(banner if rc == 0 else "")
    return Gpu(source="nvidia-smi", driver_version=driver, cuda_driver_version=cuda, devices=devices, notes=notes)


def probe_procfs(notes: list[str], proc: Path = PROC_VERSION, sysfs: Path = SYS_VERSION) -> Optional[Gpu]:
    for path, parse in ((proc, parse_proc_version), (sysfs, lambda t: t.strip() or None)):
        try:
            driver = parse(path.read_text())
        except OSError:
            continue
        if driver:
            return Gpu(source="procfs", driver_version=driver, notes=notes)
    return None


def probe_gpu(nvml: Any = None, smi: Optional[str] = "auto") -> Gpu:
    """The best source that answers; `notes` says why the richer ones did not."""
    notes: list[str] = []
    try:
        return probe_nvml(nvml)
    except Exception as exc:  # NVML absent (no driver) or the binding failed: record why
        notes.append(f"nvml: {type(exc).__name__}: {exc}")
    smi_path = shutil.which("nvidia-smi") if smi == "auto" else smi
    if smi_path:
        gpu = probe_smi(smi_path, notes)
        if gpu is not None:
            return gpu
    else:
        notes.append("nvidia-smi: not found")
    gpu = probe_procfs(notes)
    if gpu is not None:
        return gpu
    return Gpu(source="none", notes=notes)
