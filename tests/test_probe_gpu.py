"""GPU facts: NVML through a stand-in binding that replays recorded real values, and the
nvidia-smi / procfs parsers on recorded real outputs (tests/data/gpu/SOURCES.md).
There is no GPU here; on a machine with one, test_real_machine checks the live path."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from envdoctor.probe import gpu as gpu_mod
from envdoctor.probe.gpu import (
    cuda_version_from_int,
    parse_proc_version,
    parse_smi_header,
    parse_smi_query,
    probe_gpu,
    probe_nvml,
    probe_procfs,
)

DATA = Path(__file__).parent / "data" / "gpu"


class NVMLError(Exception):
    """Stands for pynvml.NVMLError (the real one needs the real library to be constructed)."""


class ReplayNvml:
    """A stand-in for the `pynvml` module that answers with recorded values.

    as_bytes: answer strings as bytes, as bindings before nvidia-ml-py 11.515 did.
    no_v2: the driver/binding lacks nvmlSystemGetCudaDriverVersion_v2.
    """

    def __init__(self, recording: dict, as_bytes: bool = False, no_v2: bool = False) -> None:
        self.rec = recording
        self.as_bytes = as_bytes
        self.no_v2 = no_v2
        self.calls: list[str] = []

    def _s(self, value: str):
        return value.encode() if self.as_bytes else value

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self):
        return self._s(self.rec["nvmlSystemGetDriverVersion"])

    def nvmlSystemGetCudaDriverVersion_v2(self):
        if self.no_v2:
            raise NVMLError("Function Not Found")
        return self.rec["nvmlSystemGetCudaDriverVersion_v2"]

    def nvmlSystemGetCudaDriverVersion(self):
        return self.rec["nvmlSystemGetCudaDriverVersion"]

    def nvmlDeviceGetCount(self):
        return len(self.rec["devices"])

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self._s(self.rec["devices"][h]["nvmlDeviceGetName"])

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return tuple(self.rec["devices"][h]["nvmlDeviceGetCudaComputeCapability"])

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=self.rec["devices"][h]["memory_total_bytes"], free=0, used=0)


def recording(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_stand_in_speaks_the_real_bindings_api():
    """Every function the stand-in provides exists in the real nvidia-ml-py, so it cannot drift."""
    pynvml = pytest.importorskip("pynvml")
    for name in dir(ReplayNvml):
        if name.startswith("nvml"):
            assert callable(getattr(pynvml, name)), name


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str (nvidia-ml-py>=11.515)", "bytes (older)"])
def test_nvml_three_part_driver_version_is_kept_whole(as_bytes):
    fake = ReplayNvml(recording("nvml_535.104.05_2xT4.json"), as_bytes=as_bytes)
    g = probe_nvml(fake)
    assert g.source == "nvml"
    assert g.driver_version == "535.104.05"  # not "535.104", not "b'535.104.05'"
    assert g.cuda_driver_version == "12.2"
    assert [(d.index, d.name, d.compute_capability, d.memory_total_mib) for d in g.devices] == [
        (0, "Tesla T4", "7.5", 15360), (1, "Tesla T4", "7.5", 15360)]
    assert fake.calls == ["init", "shutdown"] and g.notes == []


def test_nvml_without_v2_falls_back_to_v1_and_says_so():
    g = probe_nvml(ReplayNvml(recording("nvml_550.40.07_RTX4070.json"), no_v2=True))
    assert g.cuda_driver_version == "12.4"
    assert g.devices[0].name == "NVIDIA GeForce RTX 4070" and g.devices[0].compute_capability == "8.9"
    assert g.devices[0].memory_total_mib == 12282
    assert any("_v2" in n for n in g.notes)


def test_nvml_and_nvidia_smi_agree_on_the_recorded_machine():
    nvml = probe_nvml(ReplayNvml(recording("nvml_535.104.05_2xT4.json")))
    driver, cuda = parse_smi_header((DATA / "nvidia-smi_535.104.05_2xT4.txt").read_text())
    assert (nvml.driver_version, nvml.cuda_driver_version) == (driver, cuda)


@pytest.mark.parametrize("value, text", [(12020, "12.2"), (12040, "12.4"), (13000, "13.0"), (11040, "11.4"),
                                         (10010, "10.1")])
def test_cuda_version_encoding(value, text):
    assert cuda_version_from_int(value) == text


@pytest.mark.parametrize("name, driver, cuda", [
    ("nvidia-smi_535.104.05_2xT4.txt", "535.104.05", "12.2"),
    ("nvidia-smi_550.40.07_RTX4070.txt", "550.40.07", "12.4"),
    ("nvidia-smi_331.62_banner.txt", "331.62", None),  # banners before CUDA 8 era had no CUDA Version
])
def test_smi_banner(name, driver, cuda):
    assert parse_smi_header((DATA / name).read_text()) == (driver, cuda)


def test_smi_query_with_header_in_any_field_order():
    driver, devices = parse_smi_query((DATA / "nvidia-smi_query_570.86.15_2gpus.csv").read_text())
    assert driver == "570.86.15"
    assert [(d.index, d.name, d.compute_capability) for d in devices] == [
        (0, "NVIDIA TITAN V", "7.0"), (1, "NVIDIA RTX 5880 Ada Generation", "8.9")]


def test_smi_query_units_and_noheader_forms():
    with_units = ("index, name, compute_cap, memory.total [MiB], driver_version\n"
                  "0, Tesla T4, 7.5, 15360 MiB, 535.104.05\n")
    driver, devices = parse_smi_query(with_units)
    assert driver == "535.104.05" and devices[0].memory_total_mib == 15360
    driver, devices = parse_smi_query("0, Tesla T4, 7.5, 15360, 535.104.05\n")
    assert driver == "535.104.05" and devices[0].compute_capability == "7.5"
    assert parse_smi_query("") == (None, [])


@pytest.mark.parametrize("name, driver", [
    ("proc_version_384.98.txt", "384.98"),
    ("proc_version_open_565.57.01.txt", "565.57.01"),
    ("proc_version_jetson_35.3.1.txt", "35.3.1"),
])
def test_proc_driver_version(name, driver):
    assert parse_proc_version((DATA / name).read_text()) == driver
    g = probe_procfs([], proc=DATA / name, sysfs=DATA / "absent")
    assert g.source == "procfs" and g.driver_version == driver and g.cuda_driver_version is None


def _fake_smi(tmp_path: Path, body: str) -> Path:
    """An `nvidia-smi` stand-in that replays recorded output (and logs how it was called)."""
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n{body}\n")
    exe.chmod(0o755)
    return exe


class NoNvml:
    def nvmlInit(self):
        raise NVMLError("NVML Shared Library Not Found")


def test_nvidia_smi_fallback_replaying_recorded_output(tmp_path):
    smi = _fake_smi(tmp_path, f'case "$1" in --query-gpu=*) cat {DATA}/nvidia-smi_query_570.86.15_2gpus.csv;; '
                              '*) exit 9;; esac')
    g = probe_gpu(nvml=NoNvml(), smi=str(smi))
    assert g.source == "nvidia-smi" and g.driver_version == "570.86.15"
    assert [d.compute_capability for d in g.devices] == ["7.0", "8.9"]
    assert g.notes[0].startswith("nvml: NVMLError")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "--query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv"


def test_old_driver_without_compute_cap_field_is_asked_again_without_it(tmp_path):
    smi = _fake_smi(tmp_path, f"cat {DATA}/nvidia-smi_470.182.03_compute_cap_invalid.txt; exit 2")
    g = probe_gpu(nvml=NoNvml(), smi=str(smi))
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "compute_cap" in calls[0] and "compute_cap" not in calls[1]
    assert any('Field "compute_cap" is not a valid field to query.' in n for n in g.notes)


def test_hung_nvidia_smi_is_cut_off(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_mod, "SMI_TIMEOUT", 0.5)
    smi = _fake_smi(tmp_path, "exec sleep 30")
    start = time.monotonic()
    g = probe_gpu(nvml=NoNvml(), smi=str(smi))
    assert time.monotonic() - start < 5
    assert any("no answer within 0.5 s" in n for n in g.notes)


def test_real_machine():
    """The live path with the real nvidia-ml-py: here (no driver) 'no NVIDIA driver' is a fact."""
    pytest.importorskip("pynvml")
    g = probe_gpu()
    if Path("/proc/driver/nvidia/version").exists():
        assert g.source == "nvml" and g.driver_version and g.devices
    else:
        assert g.source == "none" and g.driver_version is None and g.devices == []
        assert g.notes[0].startswith("nvml: NVMLError")
