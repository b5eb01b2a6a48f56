"""The torch / torchvision / mmcv load probes against real environments (tests/envs.py)."""

from __future__ import annotations

import sys
import time

import pytest

from envdoctor.probe import collect
from tests.cext import build_fake_package, have_compilers
from tests.conftest import need_python, real_env, validate_report
from tests.envs import python_in


def statuses(report):
    return {name: c.load.status for name, c in report.components.items()}


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "processes"])
def test_torch_alone(fork):
    report = collect(str(python_in(real_env("torch213"))), timeout=60, fork=fork)
    assert statuses(report) == {"torch": "ok", "torchvision": "missing", "torchvision.ops": "missing",
                                "mmcv": "missing", "mmcv._ext": "missing"}
    torch = report.components["torch"]
    rt = torch.facts["runtime"]
    assert rt["version"] == "2.13.0+cpu" == torch.facts["metadata_version"] == torch.version
    assert rt["cuda"] is None and rt["cuda_available"] is False and rt["device_count"] == 0
    assert rt["libcudart"] == []  # a CPU build maps no CUDA runtime
    assert rt["file"].startswith(report.python.prefix)
    assert any("libstdc++" in p for p in rt["libstdcxx"])
    assert report.host.libstdcxx_source == "loaded by import torch" and report.host.glibcxx


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "processes"])
def test_torchvision_built_for_another_torch(fork):
    """torchvision 0.29.1 (cu130) beside torch 2.13.0+cpu: the import error hides the loader's."""
    report = collect(str(python_in(real_env("torch213-tv291"))), timeout=60, fork=fork)
    tv, ops = report.components["torchvision"], report.components["torchvision.ops"]
    assert report.components["torch"].load.status == "ok"
    assert tv.load.status == "import_error"
    assert tv.load.error.type == "RuntimeError"
    assert tv.load.error.message == "operator torchvision::nms does not exist"
    # loading the library directly after `import torch` reveals the real cause
    assert ops.load.status == "import_error"
    assert "libc10_cuda.so: cannot open shared object file" in ops.load.error.message
    assert ops.facts["loaded_directly"] is True and ops.facts["library"].endswith("_C_stable.so")
    assert tv.version == "0.29.1+cu130" and tv.facts["metadata_version"] == "0.29.1"


def test_working_torch_and_torchvision_of_the_test_runner():
    """The test runner's own env has torch 2.14.1 + torchvision 0.29.1 (tests/run.sh installs them)."""
    pytest.importorskip("torchvision")
    report = collect(sys.executable, timeout=90)
    st = statuses(report)
    assert st["torch"] == st["torchvision"] == st["torchvision.ops"] == "ok"
    rt = report.components["torch"].facts["runtime"]
    import torch

    assert rt["version"] == torch.__version__ and rt["arch_list"] == torch.cuda.get_arch_list()
    assert rt["cuda"] == torch.version.cuda
    assert "direct_load" not in report.components["torchvision.ops"].facts


def test_mmcv_lite_has_no_ext():
    report = collect(str(python_in(real_env("mmcv-lite"))), timeout=60)
    mm, ext = report.components["mmcv"], report.components["mmcv._ext"]
    assert mm.load.status == "ok" and mm.distribution == "mmcv-lite"
    assert mm.facts["runtime"]["version"] == "2.2.0"
    assert ext.load.status == "missing"
    assert ext.load.error.message == "No module named 'mmcv._ext'"
    assert ext.installed is False and ext.facts["ext_files"] == [] and ext.facts["in_record"] == []


def test_mmcv_conflict_lists_both_owners():
    report = collect(str(python_in(real_env("mmcv-conflict"))), timeout=60)
    mm = report.components["mmcv"]
    assert sorted(mm.facts["distributions"]) == ["mmcv", "mmcv-lite"]
    owners = {o["name"]: o for o in mm.facts["owners"]}
    assert owners["mmcv"]["version"] == "1.7.2" and owners["mmcv-lite"]["version"] == "2.2.0"
    # mmcv 1.7.2 was built here from the sdist (setuptools), mmcv-lite is the published wheel
    assert owners["mmcv"]["wheel_generator"].startswith("setuptools")
    assert owners["mmcv-lite"]["wheel_generator"].startswith("bdist_wheel")
    assert "py3-none-any" in owners["mmcv"]["wheel_tags"]
    assert owners["mmcv"]["ext_in_record"] == [] and owners["mmcv-lite"]["ext_in_record"] == []
    # installed (metadata of the first owner) and imported versions are both there, and differ
    assert mm.facts["metadata_version"] == "1.7.2"
    assert mm.facts["runtime"]["version"] == "2.2.0" == mm.facts["version_py"]["__version__"]
    assert mm.load.status == "ok" and report.components["mmcv._ext"].load.status == "missing"


@pytest.mark.skipif(not have_compilers(), reason="gcc not installed")
@pytest.mark.parametrize("fork", [True, False], ids=["fork", "processes"])
def test_a_crash_in_mmcv_ext_does_not_take_torch_down(tmp_path, monkeypatch, fork):
    exe = str(python_in(real_env("torch213")))
    fake = build_fake_package(exe, tmp_path / "fake", "mmcv", "_ext", "volatile int *p = NULL; *p = 1;",
                              version="9.9.9")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    report = collect(exe, timeout=60, fork=fork)
    st = statuses(report)
    assert st["torch"] == "ok" and st["mmcv"] == "ok"
    ext = report.components["mmcv._ext"].load
    assert ext.status == "crash" and ext.error.signal == "SIGSEGV"
    assert "Segmentation fault" in ext.error.traceback
    assert report.components["torch"].facts["runtime"]["version"] == "2.13.0+cpu"
    assert report.components["torch"].facts["runtime"]["cuda_available"] is False
    assert report.components["mmcv"].facts["runtime"]["version"] == "9.9.9"
    validate_report(report.to_dict())  # crash results (signal, stack) fit the schema


@pytest.mark.skipif(not have_compilers(), reason="gcc not installed")
@pytest.mark.parametrize("fork", [True, False], ids=["fork", "processes"])
def test_torch_that_segfaults_on_import(tmp_path, monkeypatch, fork):
    """`import torch` itself kills the process: torch is a crash with its stack, what needs
    torch is not tried (and says why), and the report is still whole."""
    exe = sys.executable
    fake = build_fake_package(exe, tmp_path / "fake", "torch", "_C", "volatile int *p = NULL; *p = 1;",
                              version="0.0.1")
    (fake / "torch" / "__init__.py").write_text("__version__ = '0.0.1'\nfrom torch import _C\n")
    build_fake_package(exe, fake, "mmcv", "_ext", "")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    report = collect(exe, timeout=30, fork=fork)
    torch = report.components["torch"].load
    assert torch.status == "crash" and torch.error.signal == "SIGSEGV"
    assert "Segmentation fault" in torch.error.traceback and "torch/__init__.py" in torch.error.traceback
    mm = report.components["mmcv"].load
    assert mm.status == "skipped" and "torch" in mm.note
    assert report.components["torch"].facts["package_dirs"][0]["path"] == str(fake / "torch")
    validate_report(report.to_dict())


@pytest.mark.skipif(not have_compilers(), reason="gcc not installed")
def test_a_hang_in_mmcv_ext_times_out_alone(tmp_path, monkeypatch):
    exe = str(python_in(real_env("torch213")))
    fake = build_fake_package(exe, tmp_path / "fake", "mmcv", "_ext", "for (;;) pause();", "#include <unistd.h>")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    start = time.monotonic()
    report = collect(exe, timeout=8)  # torch must import within it on a loaded 2-core machine (4 s was not enough)
    assert time.monotonic() - start < 8 * 2 + 10
    st = statuses(report)
    assert st["torch"] == "ok" and st["mmcv"] == "ok" and st["mmcv._ext"] == "timeout"
    assert "Timeout" in report.components["mmcv._ext"].load.error.traceback
    validate_report(report.to_dict())


@pytest.mark.parametrize("minor", ["3.6", "3.7", "3.12", "3.13"])
def test_components_on_old_and_new_pythons(minor, tmp_path, monkeypatch):
    """The load probe (fork, watchdog, files) runs on every supported target version."""
    exe = str(need_python(minor))
    if have_compilers():
        fake = build_fake_package(exe, tmp_path / "fake", "mmcv", "_ext", "abort();", "#include <stdlib.h>")
        monkeypatch.setenv("PYTHONPATH", str(fake))
    report = collect(exe, timeout=30)
    st = statuses(report)
    assert st["torch"] == "missing" and st["torchvision"] == "missing"
    if have_compilers():
        assert st["mmcv"] == "ok"
        assert st["mmcv._ext"] == "crash" and report.components["mmcv._ext"].load.error.signal == "SIGABRT"
