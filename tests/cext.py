"""Tiny CPython extension modules that fail to load for real, built with gcc/g++ by the tests.

`build_extensions(python, dest)` compiles, for that interpreter, one module per way an
extension can fail (a library deleted after linking, a C or C++-mangled symbol the
library no longer has, an init that segfaults, aborts, hangs, exits, or prints to
stdout, a wrong init name, a file that is not ELF) plus a good control. The recipe
follows shared/research/testbed.md §6; about a second per interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# module name -> what its import does
MODULES = {
    "good_mod": "imports",
    "broken_missinglib": "needs libhelper_a.so, deleted after linking",
    "broken_undefsym": "needs helper_b, which libhelper_b.so no longer defines",
    "broken_cxxsym": "needs c10::check_version(int), the library now has check_version(long)",
    "broken_segv": "PyInit writes through a NULL pointer",
    "broken_abort": "PyInit calls abort()",
    "broken_hang": "PyInit never returns",
    "broken_exit": "PyInit calls exit(3)",
    "noisy_stdout": "PyInit prints to stdout, then imports fine",
    "broken_noinit": "the init function has the wrong name",
    "broken_notelf": "the .so is a text file (a Git LFS pointer)",
}


def have_compilers() -> bool:
    return shutil.which("gcc") is not None and shutil.which("g++") is not None


def _python_config(python: str) -> tuple[str, str]:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include']); "
                       "print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    return out[0].strip(), out[1].strip()


def _module_c(name: str, body: str, decls: str = "") -> str:
    return (
        "#include <Python.h>\n"
        f"{decls}\n"
        f'static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL}};\n'
        f"PyMODINIT_FUNC PyInit_{name}(void) {{ {body} return PyModule_Create(&def); }}\n"
    )


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")


def build_extensions(python: str, dest: Path) -> Path:
    """Build every module in MODULES for `python` into dest; returns dest (put it on sys.path)."""
    dest.mkdir(parents=True, exist_ok=True)
    include, ext = _python_config(python)
    cflags = ["-shared", "-fPIC", "-O0", f"-I{include}"]
    rpath = "-Wl,-rpath,$ORIGIN"

    def cc(name: str, source: str, *extra: str, cxx: bool = False) -> None:
        src = dest / (name + (".cpp" if cxx else ".c"))
        src.write_text(source)
        _run(["g++" if cxx else "gcc", *cflags, src.name, *extra, "-o", name + ext], dest)

    def lib(name: str, source: str, cxx: bool = False) -> None:
        src = dest / (name + (".cpp" if cxx else ".c"))
        src.write_text(source)
        _run(["g++" if cxx else "gcc", "-shared", "-fPIC", "-o", f"{name}.so", src.name], dest)

    cc("good_mod", _module_c("good_mod", ""))

    # linked against a shared library that is then deleted
    lib("libhelper_a", "int helper_a(void){return 42;}\n")
    cc("broken_missinglib", _module_c("broken_missinglib", "if (helper_a() != 42) return NULL;", "int helper_a(void);"),
       "-L.", "-lhelper_a", rpath)
    (dest / "libhelper_a.so").unlink()

    # undefined C symbol: the library is replaced by one without it (same file name)
    lib("libhelper_b", "int helper_b(void){return 1;}\n")
    cc("broken_undefsym", _module_c("broken_undefsym", "if (helper_b() != 1) return NULL;", "int helper_b(void);"),
       "-L.", "-lhelper_b", rpath)
    lib("libhelper_b", "int helper_b_renamed(void){return 1;}\n")

    # undefined C++-mangled symbol, like torch's c10 ones after an ABI change
    lib("libfakec10", "namespace c10 { int check_version(int v){return v;} }\n", cxx=True)
    cc("broken_cxxsym",
       "#include <Python.h>\n"
       "namespace c10 { int check_version(int v); }\n"
       'static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "broken_cxxsym", NULL, -1, NULL};\n'
       'extern "C" PyMODINIT_FUNC PyInit_broken_cxxsym(void) '
       "{ if (c10::check_version(2) != 2) return NULL; return PyModule_Create(&def); }\n",
       "-L.", "-lfakec10", rpath, cxx=True)
    lib("libfakec10", "namespace c10 { long check_version(long v){return v;} }\n", cxx=True)

    cc("broken_segv", _module_c("broken_segv", "volatile int *p = NULL; *p = 1;"))
    cc("broken_abort", _module_c("broken_abort", "abort();", "#include <stdlib.h>"))
    cc("broken_hang", _module_c("broken_hang", "for (;;) pause();", "#include <unistd.h>"))
    cc("broken_exit", _module_c("broken_exit", "exit(3);", "#include <stdlib.h>"))
    cc("noisy_stdout", _module_c("noisy_stdout", 'printf("hello from PyInit\\n"); fflush(stdout);',
                                 "#include <stdio.h>"))
    cc("broken_noinit", _module_c("broken_noinit", "").replace("PyInit_broken_noinit", "PyInit_something_else"))
    (dest / f"broken_notelf{ext}").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:%064d\nsize 123456\n" % 0)
    return dest


def build_fake_package(python: str, dest: Path, package: str, ext_name: str, body: str, decls: str = "",
                       version: str = "0.0.0") -> Path:
    """dest/<package>/ with an __init__.py (version `version`) and a compiled <package>.<ext_name>
    whose init runs `body`: e.g. an mmcv whose _ext segfaults. Returns dest (put it on sys.path)."""
    include, ext = _python_config(python)
    pkg = dest / package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (pkg / "version.py").write_text(f"__version__ = {version!r}\n")
    src = pkg / f"{ext_name}.c"
    src.write_text(_module_c(ext_name, body, decls))
    _run(["gcc", "-shared", "-fPIC", "-O0", f"-I{include}", src.name, "-o", ext_name + ext], pkg)
    src.unlink()
    return dest
