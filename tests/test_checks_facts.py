"""Checks on recorded fact sets (tests/data/facts): Windows and GPU environments from the research notes,
the seed's own environment, and reports recorded from the real tests/envs.py environments."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from envdoctor.classify import classified
from envdoctor.facts import LoadError, LoadResult, Package, Report
from envdoctor.rules import load_tables
from tests.conftest import validate_report
from tests.diagnosed import diagnosed, findings_of

FACTS = Path(__file__).resolve().parent / "data" / "facts"
T = load_tables()


def load(name: str) -> Report:
    return Report.from_dict(json.loads((FACTS / name).read_text(encoding="utf-8")))


def check(report: Report, **kw):
    findings = findings_of(report, T, **kw)
    return findings, {f.id: f for f in findings}


@pytest.mark.parametrize("path", sorted(FACTS.glob("*.json")), ids=lambda p: p.name)
def test_fact_sets_validate_and_checks_keep_them_valid(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    validate_report(data)
    report = diagnosed(Report.from_dict(data), T)
    validate_report(report.to_dict())
    assert not any(f.id == "ED000" for f in report.findings), [f.title for f in report.findings]


EXPECTED = {
    "seed_windows_py312_torch251_mmcvfull172.json": {"ED402", "ED405", "ED407", "ED702"},
    "linux_rtx5090_torch251_cu124.json": {"ED103"},
    "linux_driver470_torch212_cu121.json": {"ED102"},
    "linux_rtx3090_torch213_cpu.json": {"ED202"},
    "linux_torch2141_cu130_tv0280.json": {"ED101", "ED301", "ED302"},
    "linux_venvF_torch251_mmcv220_cxx11.json": {"ED101", "ED402", "ED405", "ED406", "ED407"},
    "linux_glibcxx_3430_missing.json": {"ED205", "ED502"},
    "windows_winerror1114_c10.json": {"ED101", "ED201"},
    "real_mmcv-lite.json": {"ED401"},
    "real_mmcv172-pure.json": {"ED401", "ED405", "ED407"},
    "real_mmcv-conflict.json": {"ED403", "ED405", "ED407"},
    "real_torch213-tv291.json": {"ED301", "ED302", "ED303"},
}


@pytest.mark.parametrize("name, ids", sorted(EXPECTED.items()))
def test_fact_set_findings(name, ids):
    findings, _ = check(load(name))
    assert {f.id for f in findings} == ids, [(f.id, f.title) for f in findings]


def test_seed_is_diagnosed_exactly():
    """Windows, Python 3.12, torch 2.5.1+cu124, mmcv-full 1.7.2, CUDA 12.7 driver, WinError 127 in Chinese."""
    report = load("seed_windows_py312_torch251_mmcvfull172.json")
    findings, by = check(report)
    assert report.components["mmcv._ext"].load.cause is None  # the recorded probe's result, as it was
    assert classified(report, T).components["mmcv._ext"].load.cause == "missing_procedure"
    f = by["ED402"]
    assert f.severity == "error" and f.component == "mmcv"
    assert "Windows error 127" in f.title and "built for another torch than 2.5.1+cu124" in f.title
    assert f.evidence["winerror"] == 127 and f.evidence["language"] == "zh-CN"
    assert f.evidence["message"] == "DLL load failed while importing _ext: 找不到指定的程序。"
    assert f.evidence["distribution"] == "mmcv-full 1.7.2"
    # no official wheel: the compat layer is the fix
    assert [fx.strategy for fx in f.fixes] == ["compat"]
    assert f.fixes[0].commands == ["envdoctor fix --apply --strategy compat --python "
                                   "C:\\Users\\user\\E2FGVI\\venv\\Scripts\\python.exe"]
    # the binary facts name the procedure WinError 127 leaves out: a c10 symbol of another torch, read readable
    sym = by["ED702"]
    assert sym.explained_by == "ED402" and "127" in sym.detail and "c10::Warning::warn" in sym.detail
    nw = by["ED405"]
    assert "torch 2.5" in nw.detail and "Python 3.12" in nw.detail
    assert nw.fixes[0].strategy == "compat"
    alts = [fx for fx in nw.fixes if fx.strategy == "torch"]
    # the 1.x series (what the project uses) and the 2.x series, with exact commands
    assert any("mmcv-full 1.7.1" in fx.description and "torch 1.13.1 (cu117)" in fx.description for fx in alts)
    assert any("mmcv 2.2.0" in fx.description and "torch 2.3.1 (cu121)" in fx.description for fx in alts)
    cmds = [c for fx in alts for c in fx.commands]
    # a new Python 3.11 environment: `python`, quoted for cmd.exe (the PowerShell form follows it)
    assert ('python -m pip install --no-cache-dir "--only-binary=:all:" --index-url '
            'https://download.pytorch.org/whl/cu121 "torch==2.3.1" "torchvision==0.18.1"') in cmds
    new_env = next(fx.choice for fx in alts if fx.choice and "torch==2.3.1" in fx.choice.requirements)
    assert new_env.new_environment and new_env.python == "python" and new_env.remove == ()
    assert [i.requirements for i in new_env.installs] == [("torch==2.3.1", "torchvision==0.18.1"), ("mmcv==2.2.0",)]
    assert any("mmcv-full==1.7.1" in c and "cu117/torch1.13.0/index.html" in c for c in cmds)
    # ED001 gave way to the specific finding; nothing wrong is said about the driver (12.7 runs cu124)
    assert "ED001" not in by and "ED102" not in by


def test_rtx5090_names_a_torch_build_with_sm120():
    _, by = check(load("linux_rtx5090_torch251_cu124.json"))
    f = by["ED103"]
    assert "sm_120" in f.title and f.evidence["arch_list_from"] == "torch.cuda.get_arch_list()"
    cmd = f.fixes[0].commands[0]
    assert "--index-url https://download.pytorch.org/whl/cu128" in cmd and "torch==2." in cmd


def test_rtx5090_uses_the_table_when_torch_does_not_import():
    report = load("linux_rtx5090_torch251_cu124.json")
    del report.components["torch"].facts["runtime"]
    _, by = check(report)
    assert "ED103" in by and by["ED103"].evidence["arch_list_from"].startswith("https://")


def test_driver_470_is_too_old_for_cu121_and_names_floor():
    _, by = check(load("linux_driver470_torch212_cu121.json"))
    f = by["ED102"]
    assert f.severity == "error" and "CUDA up to 11.4" in f.detail
    assert any("--index-url https://download.pytorch.org/whl/cu118" in c for fx in f.fixes for c in fx.commands)


@pytest.mark.parametrize("driver, cuda_drv, expect", [
    ("525.60.13", "12.0", "warning"),  # 12.x family floor: runs cu121 with minor-version compatibility
    ("520.61.05", "11.8", "error"),  # below the 12.x floor
    ("530.30.02", "12.1", None),  # cu121's own driver
    ("560.35.03", "12.6", None),
])
def test_minor_version_compatibility(driver, cuda_drv, expect):
    report = load("linux_driver470_torch212_cu121.json")
    report.gpu.driver_version, report.gpu.cuda_driver_version = driver, cuda_drv
    _, by = check(report)
    if expect is None:
        assert "ED102" not in by
    else:
        assert by["ED102"].severity == expect


def test_driver_cuda_derived_from_branch_when_not_reported():
    report = load("linux_driver470_torch212_cu121.json")
    report.gpu.cuda_driver_version = None
    _, by = check(report)
    assert by["ED102"].evidence["driver_cuda"] == "11.4"
    assert by["ED102"].evidence["driver_cuda_from"] == "derived from the driver branch"


def test_cpu_torch_on_gpu_offers_the_cuda_build():
    _, by = check(load("linux_rtx3090_torch213_cpu.json"))
    cmd = by["ED202"].fixes[0].commands[0]
    assert "torch==2.13.0" in cmd and "whl/cu126" in cmd  # the newest 2.13 build a CUDA 12.4 driver runs


def test_torchvision_loader_error_is_named():
    _, by = check(load("linux_torch2141_cu130_tv0280.json"))
    f = by["ED302"]
    assert "_ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb" in f.title
    assert f.evidence["loader_cause"] == "undefined_symbol" and "built for another torch" in f.detail
    assert by["ED301"].fixes[0].commands == [
        "/home/user/venv/bin/python -m pip install --no-cache-dir --only-binary=:all: --force-reinstall --no-deps "
        "--index-url https://download.pytorch.org/whl/cu130 torchvision==0.29.1"]


def test_torchvision_cuda_torchvision_on_cpu_torch():
    report = load("real_torch213-tv291.json")
    report.components["torchvision.ops"].facts["loader_error"] = \
        "libc10_cuda.so: cannot open shared object file: No such file or directory"
    _, by = check(report)
    f = by["ED302"]
    assert "libc10_cuda.so" in f.title and "CUDA build" in f.detail
    assert "torchvision==0.28.0" in by["ED301"].fixes[0].commands[0]


def test_cxx11_symbol_against_pre_cxx11_torch_and_the_cache():
    _, by = check(load("linux_venvF_torch251_mmcv220_cxx11.json"))
    f = by["ED402"]
    assert "__cxx11" in f.title and "old one" in f.title and f.evidence["torch_cxx11_abi"] is False
    c = by["ED406"]
    assert "mmcv-2.2.0-cp311-cp311-linux_x86_64.whl" in c.title
    assert c.fixes[0].commands[0].endswith("-m pip cache remove mmcv")
    # the env has setuptools 80: only isolated builds hit pkg_resources
    assert "isolated build" in by["ED407"].title


def test_same_break_without_old_abi_says_other_torch():
    report = load("linux_venvF_torch251_mmcv220_cxx11.json")
    report.components["torch"].facts["runtime"]["cxx11_abi"] = True
    _, by = check(report)
    assert "built against another torch" in by["ED402"].title


def test_glibcxx_explains_the_torch_import_failure():
    _, by = check(load("linux_glibcxx_3430_missing.json"))
    f = by["ED502"]
    assert "GLIBCXX_3.4.30" in f.title and f.evidence["library"].endswith("libtorch_python.so")
    assert "ED001" not in by and "ED201" not in by


def test_winerror_1114_suggests_the_vc_runtime():
    _, by = check(load("windows_winerror1114_c10.json"))
    f = by["ED201"]
    assert "1114" in f.title and "c10.dll" in f.title
    assert "vc_redist" in f.fixes[0].description
    assert "ED001" not in by


def test_mmcv_lite_is_a_warning_unless_a_consumer_needs_ops():
    report = load("real_mmcv-lite.json")
    _, by = check(report)
    assert by["ED401"].severity == "warning" and "lite flavour" in by["ED401"].title
    report.packages["mmdet"] = Package(name="mmdet", version="3.3.0")
    _, by = check(report)
    assert by["ED401"].severity == "error" and "ED405" in by


def test_mmcv172_pure_names_mmcv_full_and_the_compat_layer():
    _, by = check(load("real_mmcv172-pure.json"))
    f = by["ED401"]
    assert f.severity == "error" and "mmcv-full" in f.title
    assert f.fixes[0].strategy == "compat"  # torch 2.13: no official wheel


def test_mmcv_without_ops_gets_the_wheel_where_one_exists():
    report = load("real_mmcv-lite.json")
    report.components["torch"].facts["runtime"]["version"] = "2.1.2+cu121"
    report.components["torch"].facts["runtime"]["cuda"] = "12.1"
    report.packages["mmdet"] = Package(name="mmdet", version="3.3.0")
    _, by = check(report)
    fx = by["ED401"].fixes[0]
    assert fx.strategy == "wheel"
    assert fx.commands[0].endswith("-m pip uninstall -y mmcv-lite")
    assert fx.commands[1].endswith("--find-links https://download.openmmlab.com/mmcv/dist/cu121/torch2.1.0/index.html "
                                   "mmcv==2.1.0")
    assert fx.choice is not None and fx.choice.remove == ("mmcv-lite",) and fx.choice.requirements == ["mmcv==2.1.0"]
    assert [(c.package, c.installed, c.accepts) for c in fx.choice.satisfies] == [
        ("mmdet", "3.3.0", ">=2.0.0rc4,<2.2.0")]
    assert "envdoctor fix --apply --strategy wheel" in fx.description
    assert "ED405" not in by and "ED407" not in by


def test_sdist_built_without_torch_is_an_error():
    report = load("real_mmcv-lite.json")
    report.components["mmcv"].distribution = "mmcv"
    report.components["mmcv"].facts["distributions"] = ["mmcv"]
    pkg = report.packages.pop("mmcv-lite")
    pkg.name = "mmcv"
    report.packages["mmcv"] = pkg
    _, by = check(report)
    assert by["ED401"].severity == "error" and "Skip building ext ops" in by["ED401"].title


def test_conflict_and_missing_record_files():
    _, by = check(load("real_mmcv-conflict.json"))
    f = by["ED403"]
    assert "mmcv 1.7.2" in f.title and "mmcv-lite 2.2.0" in f.title and "ED401" not in by
    assert "uninstall -y mmcv mmcv-full mmcv-lite" in f.fixes[0].commands[0]
    # testbed venv B2: mmcv-lite uninstalled, 659 of 660 files of `mmcv` gone
    report = load("real_mmcv-conflict.json")
    del report.packages["mmcv-lite"]
    report.components["mmcv"].facts["distributions"] = ["mmcv"]
    report.packages["mmcv"].record_missing = 659
    _, by = check(report)
    assert "659 of the files mmcv 1.7.2 installed are missing" in by["ED403"].title


@pytest.mark.parametrize("consumer, version, fires", [
    ("mmdet", "3.3.0", True), ("mmsegmentation", "1.2.2", True), ("mmdet3d", "1.4.0", True),
    ("mmocr", "1.0.1", True), ("mmaction2", "1.2.0", True), ("mmagic", "1.2.0", True), ("mmyolo", "0.6.0", True),
    ("mmpretrain", "1.2.0", False), ("mmpose", "1.2.0", False), ("mmpose", "1.3.2", False),
])
def test_consumer_ranges_for_mmcv_220(consumer, version, fires):
    report = load("linux_venvF_torch251_mmcv220_cxx11.json")
    report.packages[consumer] = Package(name=consumer, version=version)
    _, by = check(report)
    assert ("ED404" in by) is fires
    if fires:
        assert f"{consumer} {version} accepts mmcv" in by["ED404"].title and by["ED404"].severity == "error"


def test_consumer_range_fix_is_a_wheel_inside_the_range():
    report = load("linux_venvF_torch251_mmcv220_cxx11.json")
    report.components["torch"].facts["runtime"].update(version="2.1.0+cu118", cuda="11.8")
    report.packages["mmdet"] = Package(name="mmdet", version="3.3.0")
    _, by = check(report)
    assert any(c.endswith(" mmcv==2.1.0") for fx in by["ED404"].fixes for c in fx.commands)


def _with_load(report: Report, name: str, message: str, status: str = "import_error") -> Report:
    report.components[name].load = LoadResult(status=status, error=LoadError(type="ImportError", message=message))
    return report


def test_numpy_abi():
    report = _with_load(load("linux_venvF_torch251_mmcv220_cxx11.json"), "mmcv._ext",
                        "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.4.6 as it may crash.")
    report.packages["numpy"] = Package(name="numpy", version="2.4.6")
    _, by = check(report)
    assert "ED501" in by and "NumPy 2.4.6" in by["ED501"].title
    assert 'install "numpy<2"' in by["ED501"].fixes[0].commands[0]


def test_generic_ed001_stays_when_nothing_specific_explains():
    report = _with_load(load("real_mmcv-lite.json"), "torch", "something nobody has seen before")
    _, by = check(report)
    assert "ED201" in by  # the torch check explains torch
    report = _with_load(load("real_mmcv-lite.json"), "mmcv", "something nobody has seen before")
    _, by = check(report)
    assert "ED001" in by and by["ED001"].evidence["component"] == "mmcv"
    _, by = check(report, ignore=["ED4"])
    assert "ED001" in by and not any(i.startswith("ED4") for i in by)
    _, by = check(report, select=["ED001"])
    assert set(by) == {"ED001"}


def test_ed001_gives_way_to_the_specific_check():
    report = load("seed_windows_py312_torch251_mmcvfull172.json")
    _, by = check(report, select=["ED001"])
    assert set(by) == {"ED001"} and by["ED001"].evidence["component"] == "mmcv._ext"
    _, by = check(report)
    assert "ED001" not in by


def test_torch_shadowed_by_user_site_and_version_skew():
    report = load("real_mmcv-lite.json")
    torch = report.components["torch"]
    user = "/home/user/.local/lib/python3.11/site-packages"
    report.python.user_site = user
    torch.facts["package_dirs"] = [user + "/torch"] + torch.facts["package_dirs"]
    torch.facts["runtime"]["version"] = "2.12.0+cpu"
    _, by = check(report)
    assert "user site" in by["ED203"].title
    assert by["ED204"].severity == "error" and "2.12.0+cpu" in by["ED204"].title


def test_mmcv_cpu_ops_on_gpu_and_cuda_skew():
    report = load("linux_venvF_torch251_mmcv220_cxx11.json")
    ext = report.components["mmcv._ext"]
    ext.load = LoadResult(status="ok")
    ext.facts["compiling_cuda_version"] = "not available"
    report = replace(report, gpu=load("linux_rtx3090_torch213_cpu.json").gpu)
    _, by = check(report)
    assert "ED408" in by and "ED409" not in by
    ext.facts["compiling_cuda_version"] = "11.8"
    _, by = check(report)
    assert "ED409" in by and "ED408" not in by and "CUDA 11.8" in by["ED409"].title


def test_manylinux_wheel_newer_than_glibc():
    report = load("real_mmcv-lite.json")
    report.host.glibc = "2.27"
    _, by = check(report)
    titles = [f.title for f in findings_of(report, T) if f.id == "ED502"]
    assert any("torch 2.13.0+cpu is a manylinux wheel for glibc >= 2.28" in t for t in titles), titles


def test_python_313_blocks_a_source_build():
    report = load("real_mmcv172-pure.json")
    report.python.version = "3.13.0"
    _, by = check(report)
    assert "python313-get-version" in by["ED407"].evidence["blockers"]
