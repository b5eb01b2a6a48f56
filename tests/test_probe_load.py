"""Load probes against extension modules that really fail to load (built here with gcc)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envdoctor.probe import load_module
from envdoctor.probe.target import Target
from tests.cext import build_extensions, have_compilers
from tests.conftest import need_python

pytestmark = pytest.mark.skipif(not have_compilers(), reason="gcc/g++ not installed")


@pytest.fixture(scope="session")
def ext_dir(tmp_path_factory) -> Path:
    return build_extensions(sys.executable, tmp_path_factory.mktemp("cext"))


@pytest.fixture(scope="session")
def ext_dir36(tmp_path_factory) -> tuple[str, Path]:
    exe = need_python("3.6")
    return str(exe), build_extensions(str(exe), tmp_path_factory.mktemp("cext36"))


ME = Target(sys.executable, "--python")


def test_good_control_loads(ext_dir):
    res = load_module(ME, "good_mod", [str(ext_dir)], timeout=30)
    assert res.status == "ok", res
    assert res.error is None and res.seconds is not None and res.seconds >= 0


def test_missing_library(ext_dir):
    res = load_module(ME, "broken_missinglib", [str(ext_dir)], timeout=30)
    assert res.status == "import_error"
    assert res.error.type == "ImportError"
    assert res.error.message == "libhelper_a.so: cannot open shared object file: No such file or directory"


def test_undefined_c_symbol(ext_dir):
    res = load_module(ME, "broken_undefsym", [str(ext_dir)], timeout=30)
    assert res.status == "import_error"
    assert res.error.message.endswith("broken_undefsym" + _suffix() + ": undefined symbol: helper_b")


def test_undefined_cxx_symbol(ext_dir):
    res = load_module(ME, "broken_cxxsym", [str(ext_dir)], timeout=30)
    assert res.status == "import_error"
    assert res.error.message.endswith(": undefined symbol: _ZN3c1013check_versionEi")


def test_segfault_in_init_is_a_crash_with_signal_and_stack(ext_dir):
    res = load_module(ME, "broken_segv", [str(ext_dir)], timeout=30)
    assert res.status == "crash"
    assert res.error.signal == "SIGSEGV"
    # faulthandler's dump names the fault and the import machinery frame it happened in
    assert "Segmentation fault" in res.error.traceback
    assert "create_module" in res.error.traceback or "_bootstrap" in res.error.traceback


def test_abort_in_init_is_a_crash(ext_dir):
    res = load_module(ME, "broken_abort", [str(ext_dir)], timeout=30)
    assert res.status == "crash"
    assert res.error.signal == "SIGABRT"
    assert "Aborted" in res.error.traceback


def test_hang_in_init_times_out_with_the_stack_of_the_hang(ext_dir):
    res = load_module(ME, "broken_hang", [str(ext_dir)], timeout=1.5)
    assert res.status == "timeout"
    assert res.seconds is not None and 1.0 <= res.seconds < 12
    assert "Timeout" in res.error.traceback and "create_module" in res.error.traceback


def test_exit_in_init_is_reported_with_its_code(ext_dir):
    res = load_module(ME, "broken_exit", [str(ext_dir)], timeout=30)
    assert res.status == "crash"
    assert res.error.signal is None
    assert "exited with code 3" in res.error.message


def test_printing_to_stdout_does_not_disturb_the_result(ext_dir):
    res = load_module(ME, "noisy_stdout", [str(ext_dir)], timeout=30)
    assert res.status == "ok"
    assert res.stdout_bytes == len("hello from PyInit\n")


def test_wrong_init_name(ext_dir):
    res = load_module(ME, "broken_noinit", [str(ext_dir)], timeout=30)
    assert res.status == "import_error"
    assert "does not define module export function (PyInit_broken_noinit)" in res.error.message


def test_not_an_elf_file(ext_dir):
    res = load_module(ME, "broken_notelf", [str(ext_dir)], timeout=30)
    assert res.status == "import_error"
    assert res.error.message.endswith("invalid ELF header")


def test_absent_module_is_missing_but_a_missing_dependency_is_an_import_error(tmp_path):
    assert load_module(ME, "no_such_module_xyz", [], timeout=30).status == "missing"
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    res = load_module(ME, "needs_dep", [str(tmp_path)], timeout=30)
    assert res.status == "import_error"
    assert res.error.type == "ModuleNotFoundError" and "no_such_dependency_xyz" in res.error.message


def test_target_given_as_a_path(ext_dir):
    assert load_module(sys.executable, "good_mod", [str(ext_dir)]).status == "ok"


def test_python36_target_crash_and_error(ext_dir36):
    exe, d = ext_dir36
    assert load_module(exe, "good_mod", [str(d)], timeout=30).status == "ok"
    seg = load_module(exe, "broken_segv", [str(d)], timeout=30)
    assert seg.status == "crash" and seg.error.signal == "SIGSEGV"
    miss = load_module(exe, "broken_missinglib", [str(d)], timeout=30)
    assert miss.status == "import_error" and "libhelper_a.so" in miss.error.message


def _suffix() -> str:
    import sysconfig

    return sysconfig.get_config_var("EXT_SUFFIX")
