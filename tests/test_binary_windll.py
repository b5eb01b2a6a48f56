"""The DLL search of a Windows target as `import torch` leaves it (issue 12 item 4).

Recorded Windows facts (backslash paths, a user named 张三) are analysed here with the target's
drive mapped onto a temporary folder; the DLLs are real PE files built with MinGW-w64, and the
directory list comes from the real torch 2.5.1 `__init__.py` of the cached Windows wheel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from envdoctor.binary import Context, analyse_file, context_for
from envdoctor.binary.windll import WindowsPython, dll_directories, drive_mapper, torch_adds, user_base
from envdoctor.facts import Component, Report
from tests.conftest import IN_CI
from tests.winwheel import member

CC = "x86_64-w64-mingw32-gcc"
DLLTOOL = "x86_64-w64-mingw32-dlltool"
PREFIX = r"C:\Users\张三\miniconda3\envs\mm"
SITE = PREFIX + r"\Lib\site-packages"
VENV = r"C:\Users\张三\E2FGVI\venv"
BASE = r"C:\Python312"


def _dll(d: Path, name: str, exports: list[str]) -> None:
    (d / "f.c").write_text("int f(void) { return 1; }\n")
    (d / "f.def").write_text("EXPORTS\n" + "".join(f" {e}=f\n" for e in exports))
    subprocess.run([CC, "-shared", "-o", str(d / name), str(d / "f.c"), str(d / "f.def")], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """cudart64_110.dll, vcruntime140_1.dll, and an _ext.pyd importing one function from each."""
    if shutil.which(CC) is None:
        if IN_CI:
            pytest.fail(f"{CC} is required in CI")
        pytest.skip(f"{CC} not installed")
    d = tmp_path_factory.mktemp("windll")
    _dll(d, "cudart64_110.dll", ["cudaGetDeviceCount"])
    _dll(d, "vcruntime140_1.dll", ["__CxxFrameHandler4"])
    for lib, fn in (("cudart64_110.dll", "cudaGetDeviceCount"), ("vcruntime140_1.dll", "__CxxFrameHandler4")):
        stem = lib.split(".")[0]
        (d / f"{stem}.def").write_text(f"LIBRARY {lib}\nEXPORTS\n {fn}\n")
        subprocess.run([DLLTOOL, "-d", str(d / f"{stem}.def"), "-l", str(d / f"lib{stem}.a")], check=True,
                       capture_output=True)
    (d / "ext.c").write_text("__declspec(dllimport) int cudaGetDeviceCount(void);\n"
                             "__declspec(dllimport) int __CxxFrameHandler4(void);\n"
                             "__declspec(dllexport) int PyInit__ext(void) "
                             "{ return cudaGetDeviceCount() + __CxxFrameHandler4(); }\n")
    subprocess.run([CC, "-shared", "-o", str(d / "_ext.pyd"), str(d / "ext.c"), f"-L{d}", "-lcudart64_110",
                    "-lvcruntime140_1"], check=True, capture_output=True)
    return d


def _put(local, win_path: str, src: Path) -> Path:
    dst = Path(local(win_path))
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _torch(local, site: str, cuda: str) -> str:
    """torch with the real 2.5.1 __init__.py at site\\torch (its lib empty: no DLL of torch's is at issue)."""
    tdir = site + r"\torch"
    _put(local, tdir + r"\__init__.py", member("torch/__init__.py"))
    Path(local(tdir + r"\lib")).mkdir(parents=True, exist_ok=True)
    Path(local(tdir + r"\version.py")).write_text(f"__version__ = '2.5.1'\ncuda = '{cuda}'\n")
    return tdir


def _system32(tmp_path: Path) -> list[str]:
    """A System32 stand-in without the VC++ 2019 runtime's vcruntime140_1.dll (a missing redistributable)."""
    s = tmp_path / "System32"
    s.mkdir(parents=True)
    for name in ("kernel32.dll", "msvcrt.dll"):  # what MinGW's output imports besides ours
        (s / name).write_bytes(b"")
    return [str(s)]


def _missing(out: dict) -> set[str]:
    return {m["name"] for m in out["missing_libraries"]}


def _how(out: dict, name: str) -> str:
    return next(e["how"] for e in out["needed"] if e["name"].lower() == name.lower())


def test_conda_library_bin_is_searched(built, tmp_path):
    """conda's pytorch keeps cudart in <prefix>\\Library\\bin, which torch's __init__ adds: not "missing"."""
    local = drive_mapper({"C:": str(tmp_path / "C")})
    tdir = _torch(local, SITE, "11.8")
    _put(local, PREFIX + r"\Library\bin\cudart64_110.dll", built / "cudart64_110.dll")
    _put(local, PREFIX + r"\vcruntime140_1.dll", built / "vcruntime140_1.dll")  # conda's python.exe folder
    pyd = _put(local, SITE + r"\mmcv\_ext.cp312-win_amd64.pyd", built / "_ext.pyd")
    win = WindowsPython(executable=PREFIX + r"\python.exe", exec_prefix=PREFIX, base_exec_prefix=PREFIX,
                        torch_dir=tdir, torch_cuda="11.8")
    out = analyse_file(str(pyd), Context(torch_dir=local(tdir), host_format="pe", windows=win, local=local,
                                         windows_system_dirs=_system32(tmp_path)))
    assert _missing(out) == set(), out["missing_libraries"]
    assert _how(out, "cudart64_110.dll") == "dll_directory"
    assert out["searched"]["torch_adds"][:2] == ["torch_lib", "prefix"]
    assert out["would_load"] is True
    # without the facts of the target (the old search: torch\lib only) the same file "misses" cudart
    old = analyse_file(str(pyd), Context(torch_dir=local(tdir), host_format="pe", interpreter=local(
        PREFIX + r"\python.exe"), windows_system_dirs=_system32(tmp_path / "o")))
    assert "cudart64_110.dll" in _missing(old)


def test_venv_application_dir_is_the_base_interpreters(built, tmp_path):
    """A venv's Scripts\\python.exe starts the base python.exe: its folder (with vcruntime140_1.dll) is searched."""
    local = drive_mapper({"C:": str(tmp_path / "C")})
    tdir = _torch(local, VENV + r"\Lib\site-packages", "")
    _put(local, BASE + r"\vcruntime140_1.dll", built / "vcruntime140_1.dll")
    _put(local, VENV + r"\Lib\site-packages\torch\lib\cudart64_110.dll", built / "cudart64_110.dll")
    pyd = _put(local, VENV + r"\Lib\site-packages\mmcv\_ext.pyd", built / "_ext.pyd")
    report = Report(envdoctor="", mode="check")
    report.host.os, report.host.arch = "Windows", "AMD64"
    report.python.executable, report.python.prefix = VENV + r"\Scripts\python.exe", VENV
    report.python.base_prefix, report.python.is_venv = BASE, True
    report.components["torch"] = Component(name="torch", installed=True, facts={"package_dirs": [{"path": tdir}]})
    ctx = context_for(report, "mmcv._ext")
    assert ctx.windows is not None and ctx.windows.base_exec_prefix == BASE
    ctx.local, ctx.torch_dir, ctx.windows_system_dirs = local, local(tdir), _system32(tmp_path)
    out = analyse_file(str(pyd), ctx)
    assert _how(out, "vcruntime140_1.dll") == "app_dir", out["needed"]
    assert out["searched"]["app_dir"] == local(BASE)
    assert out["would_load"] is True, (out["missing_libraries"], out.get("problem"))
    # the old application directory, Scripts\, has no VC runtime: "missing", a false finding
    ctx.windows = None
    ctx.interpreter = local(VENV + r"\Scripts\python.exe")
    assert "vcruntime140_1.dll" in _missing(analyse_file(str(pyd), ctx))


def test_cuda_path_variable_only_without_cudart_in_torch_dirs(tmp_path):
    """%CUDA_PATH_V12_4%\\bin is added for a cu124 torch only when no added directory holds cudart64*.dll."""
    local = drive_mapper({"C:": str(tmp_path / "C"), "D:": str(tmp_path / "D")})
    tdir = _torch(local, VENV + r"\Lib\site-packages", "12.4")
    Path(local(r"D:\CUDA\v12.4\bin")).mkdir(parents=True)
    win = WindowsPython(executable=VENV + r"\Scripts\python.exe", exec_prefix=VENV, base_exec_prefix=BASE,
                        torch_dir=tdir, torch_cuda="12.4", environ={"CUDA_PATH_V12_4": r"D:\CUDA\v12.4"})
    adds = torch_adds(Path(local(tdir + r"\__init__.py")).read_text(encoding="utf-8"))
    assert set(adds) == {"torch_lib", "prefix", "base_prefix", "user_base", "cuda_path", "nvtoolsext"}
    assert dll_directories(win, adds, local) == [tdir + r"\lib", r"D:\CUDA\v12.4\bin"]
    Path(local(tdir + r"\lib\cudart64_12.dll")).write_bytes(b"")
    assert dll_directories(win, adds, local) == [tdir + r"\lib"]


def test_user_base_library_bin_and_an_older_torch(tmp_path):
    local = drive_mapper({"C:": str(tmp_path / "C")})
    site = r"C:\Users\张三\AppData\Roaming\Python\Python312\site-packages"
    assert user_base(site) == r"C:\Users\张三\AppData\Roaming\Python"
    Path(local(r"C:\Users\张三\AppData\Roaming\Python\Library\bin")).mkdir(parents=True)
    Path(local(BASE + r"\Library\bin")).mkdir(parents=True)
    win = WindowsPython(executable=BASE + r"\python.exe", exec_prefix=BASE, base_exec_prefix=BASE,
                        user_site=site, torch_dir=None)
    assert dll_directories(win, ["torch_lib", "prefix", "user_base"], local) == [
        BASE + r"\Library\bin", r"C:\Users\张三\AppData\Roaming\Python\Library\bin"]
    # a release whose __init__ adds only its lib and the prefix's Library\bin (our own stand-in text)
    old_init = "os.add_dll_directory(th)\npy_dll_path = os.path.join(sys.exec_prefix, 'Library', 'bin')\n"
    assert torch_adds(old_init) == ["torch_lib", "prefix"]
    assert torch_adds("import os\n") == ["torch_lib"]
