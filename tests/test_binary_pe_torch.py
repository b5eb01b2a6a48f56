"""PE analysis at real scale: the MSVC-built DLLs of torch 2.5.1's Windows wheel (tests/winwheel.py).

c10.dll exports 1,831 names and torch_cpu.dll 58,481 (pefile alone stops at 8,192 and cuts names at
512 characters); torch_python.dll imports 4,915 functions from torch_cpu.dll. The seed case is rebuilt
from them: a MinGW-built mmcv `_ext.pyd` importing real c10.dll exports plus one MSVC-mangled name this
c10.dll lacks must be error 127 named to that symbol, demangled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pefile
import pytest

from envdoctor.binary import pe
from envdoctor.binary.demangle import demangle_all
from tests.conftest import IN_CI, run_cli
from tests.winwheel import member

CC = "x86_64-w64-mingw32-gcc"
DLLTOOL = "x86_64-w64-mingw32-dlltool"
# torch 1.x's static c10::Warning::warn, which torch 2.5.1's c10.dll no longer exports
GONE = ("?warn@Warning@c10@@SAXAEBUSourceLocation@2@AEBV?$basic_string@DU?$char_traits@D@std@@V?$allocator@D@2@@std@@"
        "_N@Z")
GONE_READABLE = ("public: static void __cdecl c10::Warning::warn(struct c10::SourceLocation const &, class "
                 "std::basic_string<char, struct std::char_traits<char>, class std::allocator<char>> const &, bool)")
PRESENT = ("?warn@c10@@YAXAEBVWarning@1@@Z", "?torchCheckFail@detail@c10@@YAXPEBD0I0@Z")


def _names_in_header(path: Path) -> int:
    """NumberOfNames as the export directory states it (pefile's header parse, not its symbol walk)."""
    p = pefile.PE(str(path), fast_load=True)
    try:
        d = p.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]]
        return p.get_dword_at_rva(d.VirtualAddress + 24)
    finally:
        p.close()


def test_every_export_of_torch_cpu_is_read():
    cpu = member("torch/lib/torch_cpu.dll")
    obj = pe.read(str(cpu))
    assert len(obj.exports) == _names_in_header(cpu) > 8192
    assert all(n.isascii() and n for n in obj.exports)


def test_torch_python_finds_every_import_in_torch_cpu():
    """The real DLLs load together on Windows: not one of torch_python.dll's imports may look missing."""
    py = pe.read(str(member("torch/lib/torch_python.dll")))
    cpu = pe.read(str(member("torch/lib/torch_cpu.dll")))
    wanted = py.imports["torch_cpu.dll"]
    assert len(wanted) > 4000 and max(len(n) for n in wanted) > 512  # the long names are the test
    assert [n for n in wanted if n not in cpu.exports] == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the demangle package needs Python 3.11")
def test_msvc_names_demangle_as_llvm_undname():
    """Every MSVC name c10.dll exports (and a sample of torch_cpu.dll's) reads as LLVM's undname reads it."""
    undname = shutil.which("llvm-undname")
    if undname is None:
        if IN_CI:
            pytest.fail("llvm-undname (Debian's llvm) is the reference here")
        pytest.skip("llvm-undname not installed")
    c10 = sorted(n for n in pe.read(str(member("torch/lib/c10.dll"))).exports if n.startswith("?"))
    cpu = sorted(n for n in pe.read(str(member("torch/lib/torch_cpu.dll"))).exports if n.startswith("?"))
    names = c10 + cpu[::60]
    proc = subprocess.run([undname], input="\n".join(names) + "\n", capture_output=True, text=True, check=True)
    lines = proc.stdout.split("\n")
    ref = {lines[i]: lines[i + 1] for i in range(len(lines) - 1) if lines[i].startswith("?")}
    assert len(ref) == len(names)
    ours = demangle_all(names)
    wrong = [(n, ours[n], ref[n]) for n in names if ours[n].replace(" ", "") != ref[n].replace(" ", "")]
    assert wrong == [], wrong[:3]


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    """site-packages with the real torch 2.5.1 (c10.dll, __init__.py) and an mmcv _ext.pyd built by MinGW."""
    if shutil.which(CC) is None:
        if IN_CI:
            pytest.fail(f"{CC} is required in CI")
        pytest.skip(f"{CC} not installed")
    d = tmp_path_factory.mktemp("seed")
    site = d / "Lib" / "site-packages"
    (site / "torch" / "lib").mkdir(parents=True)
    shutil.copy(member("torch/lib/c10.dll"), site / "torch" / "lib" / "c10.dll")
    shutil.copy(member("torch/__init__.py"), site / "torch" / "__init__.py")
    shutil.copy(member("torch/version.py"), site / "torch" / "version.py")
    imports = [*PRESENT, GONE]
    (d / "imp.def").write_text("LIBRARY c10.dll\nEXPORTS\n" + "".join(f" f{i} == {n}\n" for i, n in enumerate(imports)))
    subprocess.run([DLLTOOL, "-d", str(d / "imp.def"), "-l", str(d / "libc10imp.a")], check=True, capture_output=True)
    calls = " + ".join(f"f{i}()" for i in range(len(imports)))
    (d / "ext.c").write_text("".join(f"__declspec(dllimport) int f{i}(void);\n" for i in range(len(imports)))
                             + f"__declspec(dllexport) int PyInit__ext(void) {{ return {calls}; }}\n")
    (site / "mmcv").mkdir()
    pyd = site / "mmcv" / "_ext.cp312-win_amd64.pyd"
    subprocess.run([CC, "-shared", "-o", str(pyd), str(d / "ext.c"), f"-L{d}", "-lc10imp"], check=True,
                   capture_output=True)
    return pyd


def test_seed_case_is_error_127_named_and_demangled(seed):
    assert GONE not in pe.read(str(seed.parents[1] / "torch" / "lib" / "c10.dll")).exports
    assert set(PRESENT) <= pe.read(str(seed.parents[1] / "torch" / "lib" / "c10.dll")).exports
    proc = run_cli("inspect", str(seed), "--format", "json", "--no-redact")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    a = out["analysis"]
    assert [s["name"] for s in a["missing_symbols"]] == [GONE]
    sym = a["missing_symbols"][0]
    assert sym["dll"] == "c10.dll" and sym["torch"] is True
    if sys.version_info >= (3, 11):
        assert sym["demangled"] == GONE_READABLE
    f = out["findings"][0]
    assert f["id"] == "ED702" and "127" in f["detail"] and "c10::Warning::warn" in f["detail"]
