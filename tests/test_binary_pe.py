"""PE forensics on real Windows DLLs/.pyd built with the MinGW-w64 cross compiler.

Windows itself cannot run here, so what is real is the files: a .pyd importing an
MSVC-mangled c10 function from c10.dll, analysed on Linux the way a bug report's
files would be (missing DLL = error 126, missing procedure = error 127).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from envdoctor.binary import Context, analyse_file
from tests.conftest import IN_CI, run_cli

CC = "x86_64-w64-mingw32-gcc"
DLLTOOL = "x86_64-w64-mingw32-dlltool"
MANGLED = "?check_version@c10@@YAHH@Z"
PYD = "_ext.cp311-win_amd64.pyd"


def _build(d: Path, exports: str, out: str) -> None:
    (d / "c10.def").write_text(f"EXPORTS\n{exports}")
    subprocess.run([CC, "-shared", "-o", str(d / out), str(d / "c10.c"), str(d / "c10.def")], check=True,
                   capture_output=True, text=True)


@pytest.fixture(scope="module")
def pe(tmp_path_factory) -> Path:
    if shutil.which(CC) is None or shutil.which(DLLTOOL) is None:
        if IN_CI:
            pytest.fail(f"{CC} is required in CI (tests/run.sh installs gcc-mingw-w64-x86-64)")
        pytest.skip(f"{CC} not installed")
    d = tmp_path_factory.mktemp("pe")
    (d / "c10.c").write_text("int dep_fn(int x) { return x + 1; }\nint cv_impl(int v) { return v; }\n")
    # c10.dll exports an MSVC-mangled name (as torch's c10.dll does), mapped to a C function
    _build(d, f" dep_fn\n {MANGLED}=cv_impl\n", "c10.dll")
    _build(d, " dep_fn\n", "c10_without_check_version.dll")
    # import library: the C name c10_check_version imports the mangled name from c10.dll
    (d / "imp.def").write_text(f"LIBRARY c10.dll\nEXPORTS\n dep_fn\n c10_check_version == {MANGLED}\n")
    subprocess.run([DLLTOOL, "-d", str(d / "imp.def"), "-l", str(d / "libc10imp.a")], check=True,
                   capture_output=True)
    (d / "ext.c").write_text(
        "__declspec(dllimport) int dep_fn(int);\n__declspec(dllimport) int c10_check_version(int);\n"
        "__declspec(dllexport) void *PyInit__ext(void) { return (void *)(long long)(dep_fn(1) + "
        "c10_check_version(2)); }\n")
    subprocess.run([CC, "-shared", "-o", str(d / PYD), str(d / "ext.c"), f"-L{d}", "-lc10imp"], check=True,
                   capture_output=True, text=True)
    return d


def _layout(pe: Path, root: Path, dll: str | None, where: str) -> Path:
    """site-packages/mmcv/_ext.pyd, with c10.dll beside it, in torch/lib, or absent."""
    site = root / "site-packages"
    (site / "mmcv").mkdir(parents=True)
    shutil.copy(pe / PYD, site / "mmcv" / PYD)
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "version.py").write_text("__version__ = '2.5.1+cu124'\ncuda = '12.4'\n")
    if dll:
        target = site / "mmcv" if where == "module" else site / "torch" / "lib"
        shutil.copy(pe / dll, target / "c10.dll")
    return site / "mmcv" / PYD


def _inspect(path: Path, *args: str) -> tuple[int, dict]:
    proc = run_cli("inspect", str(path), *args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_imports_are_read(pe):
    a = analyse_file(str(pe / PYD), Context(search_dirs=[str(pe)]))
    assert a["format"] == "pe" and a["machine"] == "x86_64"
    assert a["init_functions"] == ["PyInit__ext"]
    how = {n["name"]: n["how"] for n in a["needed"]}
    assert how["c10.dll"] == "module_dir"
    assert how["KERNEL32.dll"] == "system"  # no System32 here: assumed, not reported missing


def test_dll_in_torch_lib_is_loaded_by_import_torch(pe, tmp_path):
    ext = _layout(pe, tmp_path, "c10.dll", "torch_lib")
    code, out = _inspect(ext)
    assert code == 0, out["findings"]
    c10 = next(n for n in out["analysis"]["needed"] if n["name"] == "c10.dll")
    assert c10["how"] == "loaded" and c10["path"].endswith("torch/lib/c10.dll")
    assert out["analysis"]["torch"]["version"] == "2.5.1+cu124"


def test_missing_dll_is_error_126(pe, tmp_path):
    ext = _layout(pe, tmp_path, None, "")
    code, out = _inspect(ext)
    assert code == 1
    assert [m["name"] for m in out["analysis"]["missing_libraries"]] == ["c10.dll"]
    f = out["findings"][0]
    assert f["id"] == "ED701" and "c10.dll" in f["title"] and "126" in f["title"]
    # --search-dir plays os.add_dll_directory
    code, out = _inspect(ext, "--search-dir", str(pe))
    assert code == 0


def test_missing_procedure_is_error_127_and_named(pe, tmp_path):
    ext = _layout(pe, tmp_path, "c10_without_check_version.dll", "torch_lib")
    code, out = _inspect(ext)
    assert code == 1
    sym = out["analysis"]["missing_symbols"][0]
    assert sym["name"] == MANGLED and sym["dll"] == "c10.dll"
    assert sym["demangled"] == "int __cdecl c10::check_version(int)"
    f = out["findings"][0]
    assert f["id"] == "ED702" and "built for another torch" in f["title"] and "2.5.1" in f["title"]
    assert "127" in f["detail"] and MANGLED in f["detail"] and "c10::check_version(int)" in f["detail"]


def test_renamed_pyd_has_no_matching_init(pe, tmp_path):
    shutil.copy(pe / PYD, tmp_path / "other.cp311-win_amd64.pyd")
    shutil.copy(pe / "c10.dll", tmp_path / "c10.dll")
    code, out = _inspect(tmp_path / "other.cp311-win_amd64.pyd")
    assert code == 1 and [f["id"] for f in out["findings"]] == ["ED706"]


def test_truncated_pyd(pe, tmp_path):
    data = (pe / PYD).read_bytes()
    cut = tmp_path / PYD
    cut.write_bytes(data[: len(data) // 3])
    a = analyse_file(str(cut))
    assert a["problem"]["kind"] == "truncated"
    code, out = _inspect(cut)
    assert code == 1 and out["findings"][0]["id"] == "ED705"


def test_windows_binary_in_a_linux_environment_is_named(pe):
    a = analyse_file(str(pe / PYD), Context(host_format="elf", search_dirs=[str(pe)]))
    assert a["problem"]["kind"] == "wrong_format" and "Windows" in a["problem"]["detail"]
