"""ELF forensics on real extensions built by gcc/g++ that fail to load for real.

Each case is also imported by the real interpreter, so the analysis is compared with
what the loader itself says (it names only the first problem; the analysis names all).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from envdoctor.binary import Context, analyse_file, attach_analysis
from envdoctor.binary.demangle import demangle_all, itanium_subset
from envdoctor.checks import run_checks
from envdoctor.facts import Component, LoadError, LoadResult, Report
from tests.conftest import IN_CI, ROOT, real_env, run_cli, validate_report

EXT = sysconfig.get_config_var("EXT_SUFFIX")
BUILD = ROOT / "tests" / "data" / "binary" / "build_elf.sh"
PYINC = sysconfig.get_paths()["include"]
VALUE_ERROR_CXX11 = "_ZN3c1010ValueErrorC1ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        if IN_CI:
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} not installed")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    _need("gcc")
    _need("g++")
    d = tmp_path_factory.mktemp("elf") / "b"
    subprocess.run(["bash", str(BUILD), str(d), PYINC, EXT], check=True, capture_output=True, text=True)
    return d


def so(built: Path, name: str) -> str:
    return str(built / f"{name}{EXT}")


def real_import(where: Path, name: str, python: str = sys.executable, pre: str = "",
                env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, **(env or {}))
    return subprocess.run([python, "-c", f"{pre}import {name}"], cwd=where, capture_output=True, text=True,
                          env=full, timeout=120)


def torch_dir() -> str:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        if IN_CI:
            pytest.fail("the test venv must have torch")
        pytest.skip("torch not installed in the test interpreter")
    return list(spec.submodule_search_locations)[0]


def inspect_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    proc = run_cli("inspect", *args, "--format", "json", env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


# --- missing libraries ---------------------------------------------------------------------------


def test_missing_library_is_named_as_the_loader_names_it(built):
    a = analyse_file(so(built, "missinglib"))
    assert [m["name"] for m in a["missing_libraries"]] == ["libhelper_a.so"]
    assert a["would_load"] is False
    err = real_import(built, "missinglib").stderr
    assert "libhelper_a.so: cannot open shared object file" in err
    # the $ORIGIN RUNPATH (RPATH with older linkers) was searched, expanded to the module's directory
    assert [str(built)] in (a["searched"]["rpath"], a["searched"]["runpath"])


def test_inspect_missing_library_exit_1_with_ed701(built):
    proc = run_cli("inspect", so(built, "missinglib"))
    assert proc.returncode == 1, proc.stderr
    assert "ED701" in proc.stdout and "libhelper_a.so" in proc.stdout and "would not load" in proc.stdout


def test_search_dir_and_ld_library_path_are_honoured(built):
    path = so(built, "norpath")
    code, out = inspect_json(path)
    assert code == 1 and out["analysis"]["missing_libraries"][0]["name"] == "libhelper_c.so"
    code, out = inspect_json(path, "--search-dir", str(built / "elsewhere"))
    assert code == 0 and out["would_load"] is True
    env = {"LD_LIBRARY_PATH": str(built / "elsewhere")}
    code, out = inspect_json(path, env=env)
    assert code == 0
    assert {n["name"]: n["how"] for n in out["analysis"]["needed"]}["libhelper_c.so"] == "ld_library_path"
    # ... and the loader agrees
    assert real_import(built, "norpath", env=env).returncode == 0
    assert real_import(built, "norpath").returncode != 0


# --- undefined symbols ---------------------------------------------------------------------------


def test_undefined_c_symbol_and_no_python_false_positives(built):
    a = analyse_file(so(built, "undefsym"))
    assert [s["name"] for s in a["missing_symbols"]] == ["helper_b"]
    assert a["missing_libraries_count"] == 0
    # PyModule_Create2 is undefined in the file too (ldd -r reports it); it must not be reported
    assert "undefined symbol: helper_b" in real_import(built, "undefsym").stderr
    code, out = inspect_json(so(built, "undefsym"))
    assert code == 1 and [f["id"] for f in out["findings"]] == ["ED702"]
    assert "none of its libraries provides" in out["findings"][0]["title"]


def test_undefined_cxx_symbol_is_demangled(built):
    _need("c++filt")
    a = analyse_file(so(built, "cxxsym"))
    sym = a["missing_symbols"][0]
    assert sym["name"] == "_ZN3c1013check_versionEi"
    assert sym["demangled"] == "c10::check_version(int)"
    assert sym["torch"] is True  # a c10:: name
    assert "undefined symbol: _ZN3c1013check_versionEi" in real_import(built, "cxxsym").stderr


def test_demangling_without_cxxfilt(built, tmp_path):
    # PATH without binutils (as on Windows): the `demangle` package reads the whole name; on Python < 3.11,
    # without it, the subset still gives the qualified name
    proc = run_cli("inspect", so(built, "cxxsym"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    want = "c10::check_version(int)" if sys.version_info >= (3, 11) else "c10::check_version(...)"
    assert want in proc.stdout and "_ZN3c1013check_versionEi" in proc.stdout


@pytest.mark.parametrize("mangled, readable", [
    (VALUE_ERROR_CXX11, "c10::ValueError::ValueError(...)"),
    ("_ZN3c1014DeviceTypeNameB5cxx11ENS_10DeviceTypeEb", "c10::DeviceTypeName[abi:cxx11](...)"),
    ("_ZNK3c1010TensorImpl15decref_pyobjectEv", "c10::TensorImpl::decref_pyobject(...) const"),
    ("_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
     "c10::detail::torchCheckFail(...)"),
    ("_ZNK3c106SymInt22maybe_as_int_slow_pathEv", "c10::SymInt::maybe_as_int_slow_path(...) const"),
    ("_ZTVN3c105ErrorE", "vtable for c10::Error"),
    ("_ZN3c107uint128dVERKS0_", "c10::uint128::operator/=(...)"),
    ("helper_b", None),
])
def test_itanium_subset(mangled, readable):
    assert itanium_subset(mangled) == readable


def test_demangle_all_matches_cxxfilt_on_the_testbed_symbols():
    _need("c++filt")
    out = demangle_all([VALUE_ERROR_CXX11, "not_mangled"])
    assert out[VALUE_ERROR_CXX11].startswith("c10::ValueError::ValueError(c10::SourceLocation, std::__cxx11::")
    assert out["not_mangled"] == "not_mangled"


# --- symbol versions -----------------------------------------------------------------------------


def test_glibcxx_version_missing(built):
    a = analyse_file(so(built, "needsver"))
    mv = a["missing_versions"]
    assert [(m["version"], m["library"], m["newest"]) for m in mv] == [("GLIBCXX_9.9", "libfakestd.so.6",
                                                                        "GLIBCXX_3.4")]
    assert "version `GLIBCXX_9.9' not found" in real_import(built, "needsver").stderr
    code, out = inspect_json(so(built, "needsver"))
    assert code == 1 and "ED704" in [f["id"] for f in out["findings"]]
    f = next(f for f in out["findings"] if f["id"] == "ED704")
    assert "GLIBCXX_9.9" in f["title"] and "GLIBCXX_3.4" in f["title"]


def test_real_libstdcxx_versions_are_satisfied(built):
    # a C++ module using std::string needs GLIBCXX/CXXABI versions of the system libstdc++: all present
    a = analyse_file(so(built, "cxxgood"))
    assert a["missing_versions_count"] == 0 and a["would_load"] is True
    assert any(n["name"] == "libstdc++.so.6" and n["path"] for n in a["needed"])
    assert real_import(built, "cxxgood").returncode == 0


# --- files that are not loadable binaries -------------------------------------------------------


@pytest.mark.parametrize("name, kind, words", [
    ("lfs", "lfs_pointer", "git lfs pull"),
    ("truncated", "truncated", "cut short"),
    ("empty", "empty", "empty"),
    ("text", "not_binary", "text file"),
])
def test_not_a_binary(built, name, kind, words):
    a = analyse_file(so(built, name))
    assert a["problem"]["kind"] == kind
    proc = run_cli("inspect", so(built, name))
    assert proc.returncode == 1 and "ED705" in proc.stdout and words in proc.stdout


def test_truncated_file_really_fails(built):
    proc = real_import(built, "truncated")
    assert proc.returncode != 0  # SIGBUS here: a crash, not even an ImportError


def test_no_init_function(built):
    code, out = inspect_json(so(built, "noinit"))
    assert code == 1 and [f["id"] for f in out["findings"]] == ["ED706"]
    assert "PyInit_something_else" in out["findings"][0]["title"]
    assert "PyInit_noinit" in real_import(built, "noinit").stderr


def test_good_module_would_load(built):
    code, out = inspect_json(so(built, "good"))
    assert code == 0 and out["would_load"] is True and out["findings"] == []
    assert out["schema"] == "envdoctor.inspect/1"
    assert real_import(built, "good").returncode == 0


@pytest.mark.parametrize("args, words", [
    (("/nonexistent/_ext.so",), "no such file"),
    (("<dir>",), "not a file"),
    (("<good>", "--search-dir", "/nonexistent"), "not a directory"),
    (("<good>", "--format", "xml"), "--format xml"),
])
def test_bad_input_is_one_line_exit_2(built, args, words):
    args = tuple(str(built) if a == "<dir>" else so(built, "good") if a == "<good>" else a for a in args)
    proc = run_cli("inspect", *args)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- torch extensions ----------------------------------------------------------------------------


def _gxx(out: Path, src: str, *args: str) -> None:
    c = out.with_suffix(".cpp")
    c.write_text(src)
    subprocess.run(["g++", "-shared", "-fPIC", "-O0", f"-I{PYINC}", str(c), "-o", str(out), "-Wl,--no-as-needed",
                    *args], check=True, capture_output=True, text=True)


# `never` is opaque to the compiler, so the call (and the library it needs) stays in the binary
MODULE = """
#include <Python.h>
%(decls)s
static volatile int never = 0;
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, NULL};
extern "C" PyMODINIT_FUNC PyInit_%(name)s(void) { %(body)s return PyModule_Create(&def); }
"""


def test_libc10_is_not_a_false_missing_library(tmp_path):
    """A torch extension has no RPATH: `ldd` says libc10.so not found; after `import torch` it is there."""
    _need("g++")
    tdir = torch_dir()
    lib = os.path.join(tdir, "lib")
    ext = tmp_path / f"usesc10{EXT}"
    # c10::detail::torchCheckFail(const char*, const char*, unsigned, const char*) exists in every torch 2.x
    src = MODULE % {"name": "usesc10", "decls": 'extern "C++" namespace c10 { namespace detail {'
                    ' [[noreturn]] void torchCheckFail(const char*, const char*, unsigned, const char*); } }',
                    "body": "if (never) c10::detail::torchCheckFail(\"a\", \"b\", 1, \"c\");"}
    _gxx(ext, src, f"-L{lib}", "-lc10")
    if shutil.which("ldd"):
        assert "libc10.so => not found" in subprocess.run(["ldd", str(ext)], capture_output=True, text=True).stdout
    a = analyse_file(str(ext), Context(torch_dir=tdir, interpreter=sys.executable))
    c10 = next(n for n in a["needed"] if n["name"] == "libc10.so")
    assert c10["how"] == "loaded" and c10["path"].startswith(lib)
    assert a["would_load"] is True and a["missing_symbols_count"] == 0
    code, out = inspect_json(str(ext), "--python", sys.executable)
    assert code == 0, out["findings"]
    # the loader agrees once torch is imported
    assert real_import(tmp_path, "usesc10", pre="import torch; ").returncode == 0


def _fake_old_abi_torch(root: Path) -> Path:
    """A torch-shaped directory whose libc10.so was built with the old libstdc++ string ABI."""
    t = root / "site-packages" / "torch"
    (t / "lib").mkdir(parents=True)
    (t / "version.py").write_text("__version__ = '2.5.1'\ncuda = None\n")
    (root / "c10.cpp").write_text(
        "#include <string>\nnamespace c10 { struct SourceLocation { const char* f; const char* file; unsigned l; };"
        " struct ValueError { ValueError(SourceLocation, std::string); };"
        " ValueError::ValueError(SourceLocation, std::string) {} }\n")
    subprocess.run(["g++", "-shared", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=0", str(root / "c10.cpp"), "-o",
                    str(t / "lib" / "libc10.so")], check=True, capture_output=True, text=True)
    return t


VALUE_ERROR_DECL = ('#include <string>\nnamespace c10 { struct SourceLocation { const char* f; const char* file;'
                    ' unsigned l; }; struct ValueError { ValueError(SourceLocation, std::string); }; }')


def test_cxx11_extension_against_old_abi_torch(tmp_path):
    """testbed §4c: an extension built with the C++11 ABI meets a torch built with the old one."""
    _need("g++")
    t = _fake_old_abi_torch(tmp_path)
    ext = tmp_path / f"_ext{EXT}"
    src = MODULE % {"name": "_ext", "decls": VALUE_ERROR_DECL,
                    "body": 'if (never) c10::ValueError(c10::SourceLocation{"f", "x", 1}, "m");'}
    # link against a c10 that has the C++11 symbol (as the build machine's torch did) ...
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "c10.cpp").write_text(VALUE_ERROR_DECL.replace("; }; }", "; }; ValueError::ValueError("
                                                "SourceLocation, std::string) {} }"))
    subprocess.run(["g++", "-shared", "-fPIC", str(tmp_path / "build" / "c10.cpp"), "-o",
                    str(tmp_path / "build" / "libc10.so")], check=True, capture_output=True)
    _gxx(ext, src, f"-L{tmp_path / 'build'}", "-lc10")
    # ... and resolve against the old-ABI torch
    a = analyse_file(str(ext), Context(torch_dir=str(t)))
    assert a["torch"]["cxx11_abi"] is False and a["torch"]["version"] == "2.5.1"
    assert [s["name"] for s in a["missing_symbols"]] == [VALUE_ERROR_CXX11]
    report = Report()
    report.components["mmcv._ext"] = Component(name="mmcv._ext", installed=True, facts={"binary": a})
    findings = run_checks(report, None, select=["ED7"])
    assert [f.id for f in findings] == ["ED702"]
    assert "built against a torch with the C++11 ABI; the installed torch 2.5.1 uses the old ABI" in findings[0].title
    # the loader says the same symbol
    err = real_import(tmp_path, "_ext", env={"LD_LIBRARY_PATH": str(t / "lib")}).stderr
    assert f"undefined symbol: {VALUE_ERROR_CXX11}" in err


def test_old_abi_extension_against_the_installed_cxx11_torch(tmp_path):
    _need("g++")
    torch_dir()  # skips (locally) without an installed torch
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "c10.cpp").write_text(VALUE_ERROR_DECL.replace("; }; }", "; }; ValueError::ValueError("
                                                "SourceLocation, std::string) {} }"))
    subprocess.run(["g++", "-shared", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=0", str(tmp_path / "build" / "c10.cpp"),
                    "-o", str(tmp_path / "build" / "libc10.so")], check=True, capture_output=True)
    ext = tmp_path / f"oldabi{EXT}"
    src = MODULE % {"name": "oldabi", "decls": VALUE_ERROR_DECL,
                    "body": 'if (never) c10::ValueError(c10::SourceLocation{"f", "x", 1}, "m");'}
    _gxx(ext, src, "-D_GLIBCXX_USE_CXX11_ABI=0", f"-L{tmp_path / 'build'}", "-lc10")
    code, out = inspect_json(str(ext), "--python", sys.executable)
    assert code == 1
    missing = out["analysis"]["missing_symbols"]
    assert missing[0]["name"] == "_ZN3c1010ValueErrorC1ENS_14SourceLocationESs"
    f = out["findings"][0]
    assert f["id"] == "ED702" and "old (pre-C++11) ABI" in f["title"]
    err = real_import(tmp_path, "oldabi", pre="import torch; ").stderr
    assert "undefined symbol: _ZN3c1010ValueErrorC1ENS_14SourceLocationESs" in err


REMOVED_IN_214 = "_ZN2at4_ops12cholesky_out10redispatchEN3c1014DispatchKeySetERKNS_6TensorEbRS4_"


def test_built_against_torch_213_loaded_in_214(tmp_path):
    """A real export of torch 2.13 that torch 2.14 dropped: linked against 2.13's libs, resolved in 2.14."""
    _need("g++")
    tdir = torch_dir()
    env213 = real_env("torch213")
    t213 = next(env213.glob("lib/python3*/site-packages/torch"))
    ver = Path(tdir, "version.py").read_text()
    if "2.14" not in ver:
        pytest.skip("the test interpreter's torch is not 2.14")
    ext = tmp_path / f"at213{EXT}"
    src = MODULE % {"name": "at213", "decls": f'extern "C" void removed_op(void) __asm__("{REMOVED_IN_214}");',
                    "body": "if (never) removed_op();"}
    _gxx(ext, src, f"-L{t213 / 'lib'}", "-ltorch_cpu", "-lc10")
    a = analyse_file(str(ext), Context(torch_dir=tdir, interpreter=sys.executable))
    assert [s["name"] for s in a["missing_symbols"]] == [REMOVED_IN_214]
    assert a["missing_symbols"][0]["demangled"].startswith("at::_ops::cholesky_out::redispatch(")
    assert a["missing_torch_symbols_count"] == 1
    # the real loaders: 2.14 refuses it with the same symbol, 2.13 loads it
    assert f"undefined symbol: {REMOVED_IN_214}" in real_import(tmp_path, "at213", pre="import torch; ").stderr
    assert real_import(tmp_path, "at213", python=str(env213 / "bin" / "python"), pre="import torch; ").returncode == 0
    # the same file against 2.13's torch directory: would load
    assert analyse_file(str(ext), Context(torch_dir=str(t213)))["would_load"] is True


# --- the probe hook ------------------------------------------------------------------------------


def test_attach_analysis_to_a_failed_component(built, tmp_path):
    pkg = tmp_path / "site-packages" / "mmcv"
    pkg.mkdir(parents=True)
    shutil.copy(so(built, "undefsym"), pkg / f"_ext{EXT}")
    shutil.copy(built / "libhelper_b.so", pkg / "libhelper_b.so")
    report = Report()
    report.components["mmcv"] = Component(name="mmcv", installed=True, version="2.2.0", distribution="mmcv",
                                          facts={"package_dirs": [str(pkg)], "ext_files": [f"_ext{EXT}"]},
                                          load=LoadResult(status="ok"))
    msg = f"{pkg / ('_ext' + EXT)}: undefined symbol: helper_b"
    report.components["mmcv._ext"] = Component(
        name="mmcv._ext", installed=True, version="2.2.0", distribution="mmcv",
        facts={"ext_files": [f"_ext{EXT}"]},
        load=LoadResult(status="import_error", error=LoadError(type="ImportError", message=msg)))
    attach_analysis(report)
    b = report.components["mmcv._ext"].facts["binary"]
    assert b["path"] == str(pkg / f"_ext{EXT}") and b["missing_symbols"][0]["name"] == "helper_b"
    assert "binary" not in report.components["mmcv"].facts  # it imported fine
    validate_report(report.to_dict())
    ids = [f.id for f in run_checks(report, None, select=["ED7"])]
    # the copy is named _ext but its init function is PyInit_undefsym: ED706 sees the rename too
    assert ids == ["ED702", "ED706"]


def test_check_attaches_the_analysis_in_a_real_env():
    """torchvision 0.29.1 (CUDA) beside torch 2.13.0+cpu: the real env the brief names."""
    env = real_env("torch213-tv291")
    proc = run_cli("check", "--python", str(env / "bin" / "python"), "--format", "json", "--no-redact")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    b = data["components"]["torchvision"]["facts"]["binary"]
    assert {m["name"] for m in b["missing_libraries"]} == {"libc10_cuda.so", "libtorch_cuda.so"}
    # torch's own libraries are found (loaded by import torch), never reported missing
    assert {n["name"]: n["how"] for n in b["needed"]}["libc10.so"] == "loaded"
    ids = [f["id"] for f in data["findings"]]
    assert "ED703" in ids and "ED701" not in ids and "ED702" not in ids
    f = next(f for f in data["findings"] if f["id"] == "ED703")
    assert "CPU-only" in f["detail"] and f["component"] == "torchvision"


@pytest.mark.parametrize("rule", ["ED701", "ED702", "ED703", "ED704", "ED705", "ED706"])
def test_explain_every_rule(rule):
    proc = run_cli("explain", rule)
    assert proc.returncode == 0 and rule in proc.stdout and "Fixes" in proc.stdout
