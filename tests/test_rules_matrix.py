"""tables_query: the wheel-selection contract (mmcv_wheel_for / torchvision_for) and the table helpers."""

from __future__ import annotations

import pytest

from envdoctor import tables_query
from envdoctor.rules import load_tables

T = load_tables()


@pytest.mark.parametrize("torch, cuda, py, os_, consumers, major, expect", [
    # mmdet 3.3.0 needs < 2.2.0: torch 2.1 -> mmcv 2.1.0 (mmcv.md §0.3)
    ("2.1.2+cu121", "12.1", "3.10", "linux", {"mmdet": "3.3.0"}, None, ("mmcv", "2.1.0", "cu121/torch2.1.0")),
    # without a consumer the newest: 2.2.0
    ("2.1.2+cu121", "12.1", "3.10", "linux", None, None, ("mmcv", "2.2.0", "cu121/torch2.1.0")),
    # torch 2.2-2.4 + mmdet 3.x: only 2.2.0 has wheels, mmdet rejects it
    ("2.2.1", "12.1", "3.10", "linux", {"mmdet": "3.3.0"}, None, None),
    ("2.4.1+cu121", "12.1", "3.12", "linux", None, None, ("mmcv", "2.2.0", "cu121/torch2.4.0")),
    # no Windows wheels for torch 2.4, none for torch >= 2.5, none for Python 3.13, none for cu124
    ("2.4.1+cu121", "12.1", "3.11", "windows", None, None, None),
    ("2.5.1+cu124", "12.4", "3.12", "windows", None, None, None),
    ("2.5.1+cu121", "12.1", "3.11", "linux", None, None, None),
    ("2.4.0", "12.4", "3.11", "linux", None, None, None),
    ("2.4.0", "12.1", "3.13", "linux", None, None, None),
    # Windows: no cp312 for 2.2.0; cp311 yes
    ("2.3.1", "12.1", "3.12", "windows", None, None, None),
    ("2.3.1", "12.1", "3.11", "windows", None, None, ("mmcv", "2.2.0", "cu121/torch2.3.0")),
    # the 1.x series: mmcv-full, on a cpu torch the cpu index
    ("1.13.1+cpu", None, "3.10", "linux", None, 1, ("mmcv-full", "1.7.1", "cpu/torch1.13.0")),
    ("2.1.0+cu118", "11.8", "3.9", "linux", None, 1, ("mmcv-full", "1.7.2", "cu118/torch2.1.0")),
    # a torch minor older than torch's own Python range has no wheel for that Python
    ("1.8.1", "11.1", "3.11", "linux", None, None, None),
])
def test_mmcv_wheel_for(torch, cuda, py, os_, consumers, major, expect):
    choice = tables_query.mmcv_wheel_for(T, torch, cuda, py, os_, consumers, mmcv_major=major)
    if expect is None:
        assert choice is None, choice
        return
    assert choice is not None
    pkg, ver, path = expect
    assert (choice.package, choice.version) == (pkg, ver)
    assert choice.find_links == f"https://download.openmmlab.com/mmcv/dist/{path}/index.html"
    assert f"--only-binary={pkg}" in choice.pip_args and "--no-cache-dir" in choice.pip_args
    assert choice.source.startswith("https://")


def test_mmcv_index_url_both_spellings():
    assert tables_query.mmcv_index_url(T, "2.1.2+cu121", "12.1") == \
        "https://download.openmmlab.com/mmcv/dist/cu121/torch2.1.0/index.html"
    assert tables_query.mmcv_index_url(T, "2.1.2+cu121", "12.1", kind="docs") == \
        "https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html"
    assert tables_query.mmcv_index_url(T, "2.0.1", None) == "https://download.openmmlab.com/mmcv/dist/cpu/torch2.0.0/index.html"


@pytest.mark.parametrize("torch, cuda, expect, index", [
    ("2.5.1+cu124", "12.4", "0.20.1", "https://download.pytorch.org/whl/cu124"),
    ("2.13.0+cpu", None, "0.28.0", "https://download.pytorch.org/whl/cpu"),
    ("2.14.1", "13.0", "0.29.1", "https://download.pytorch.org/whl/cu130"),
    ("2.0.0", "11.7", "0.15.1", "https://download.pytorch.org/whl/cu117"),
])
def test_torchvision_for(torch, cuda, expect, index):
    choice = tables_query.torchvision_for(T, torch, cuda, "3.11")
    assert choice is not None and choice.version == expect
    assert choice.index_url == index


def test_torchvision_for_old_torch_uses_find_links():
    choice = tables_query.torchvision_for(T, "1.9.1", "11.1", "3.8")
    assert choice.version == "0.10.1" and choice.find_links == "https://download.pytorch.org/whl/torch_stable.html"


def test_torch_pair_rows():
    assert tables_query.torch_pair_row(T, "0.29.1+cu130")["torch"] == ">=2.14.0"
    row = tables_query.torch_pair_row(T, "0.27.3")  # a patch not in the table: judged by its series
    assert row["torch"] == "==2.12.*" and row["series_match"]
    assert tables_query.in_spec("2.12.5", row["torch"]) and not tables_query.in_spec("2.13.0", row["torch"])


@pytest.mark.parametrize("cc, arch, ok", [
    ("12.0", ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], False),  # RTX 5090 on cu124
    ("12.0", ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], True),
    ("8.9", ["sm_80", "sm_86"], True),  # same major, newer minor: SASS runs
    ("8.7", ["sm_80", "sm_86"], False),  # Orin is excluded from sm_80/86
    ("6.1", ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # Pascal on cu128+
    ("12.0", ["sm_90", "compute_90"], True),  # PTX JIT
    ("7.0", ["sm_75", "compute_75"], False),  # PTX does not run on older GPUs
])
def test_runs_on(cc, arch, ok):
    assert tables_query.runs_on(T, cc, arch) is ok


def test_driver_tables():
    assert tables_query.driver_floor(T, "12.4", "linux")[0] == "550.54.14"  # GA row, not Update 1
    assert tables_query.driver_floor(T, "12.4", "windows")[0] == "551.61"
    assert tables_query.compat_row(T, "12.6")["linux"] == "525.60.13"
    assert tables_query.compat_row(T, "10.2")["minor_compat"] is False
    assert tables_query.driver_cuda_from_branch(T, "470.223.02") == "11.4"
    assert tables_query.driver_cuda_from_branch(T, "566.36") == "12.6"


def test_alternatives_for_the_seed_name_real_wheel_sets():
    combos = tables_query.mmcv_alternatives(T, "windows", "3.12", driver_cuda="12.7", cuda_wanted=True)
    assert combos, "Windows has official wheels for some Python"
    best = combos[0]
    assert (best.torch, best.cuda, best.python, best.mmcv.version) == ("2.3.1", "12.1", "3.11", "2.2.0")
    cmds = best.commands()
    assert cmds[0] == "python -m pip install torch==2.3.1 torchvision==0.18.1 --index-url https://download.pytorch.org/whl/cu121"
    assert "cu121/torch2.3.0/index.html" in cmds[1]
    full = tables_query.mmcv_alternatives(T, "windows", "3.12", mmcv_major=1, driver_cuda="12.7", cuda_wanted=True)
    assert full[0].mmcv.package == "mmcv-full" and full[0].torch == "1.13.1" and full[0].python == "3.10"
    assert "--extra-index-url https://download.pytorch.org/whl/cu117" in full[0].commands()[0]


def test_why_no_wheel_names_each_dimension():
    reasons = tables_query.why_no_mmcv_wheel(T, "2.5.1+cu124", "12.4", "3.12", "windows")
    assert any("torch 2.5" in r for r in reasons) and any("Python 3.12" in r for r in reasons)
    reasons = tables_query.why_no_mmcv_wheel(T, "2.4.0", "12.4", "3.11", "linux")
    assert any("cu124" in r for r in reasons)
