"""Windows builds run in MSVC's own environment (vcvars64.bat of the install vswhere reports).

There is no Windows here: the `set` listing below has the shape cmd.exe prints after vcvars64.bat of
Visual Studio 2022 Build Tools (names in mixed case, `Path` not `PATH`, cmd's hidden `=C:` entries), and
the decision is made from a recorded Windows report. Running cmd.exe itself (msvc_environment) is
listed in docs/windows.md as not run on Windows yet."""

from __future__ import annotations

import ntpath

import pytest

from envdoctor.probe.buildhost import BuildHost, msvc_build_env, parse_set_output, vcvars_script

VS = r"C:\Program Files (x86)\Microsoft Visual Studio\2022\BuildTools"
SET_AFTER_VCVARS = "\r\n".join([
    r"=C:=C:\Users\张三",
    r"ALLUSERSPROFILE=C:\ProgramData",
    r"CommandPromptType=Native",
    r"DevEnvDir=" + VS + r"\Common7\IDE" + "\\",
    r"INCLUDE=" + VS + r"\VC\Tools\MSVC\14.38.33130\include;C:\Program Files (x86)\Windows Kits\10\include"
    r"\10.0.22621.0\ucrt",
    r"LIB=" + VS + r"\VC\Tools\MSVC\14.38.33130\lib\x64;C:\Program Files (x86)\Windows Kits\10\lib\10.0.22621.0"
    r"\ucrt\x64",
    r"LIBPATH=" + VS + r"\VC\Tools\MSVC\14.38.33130\lib\x64",
    r"Path=" + VS + r"\VC\Tools\MSVC\14.38.33130\bin\HostX64\x64;C:\Windows\system32;C:\Users\张三\miniconda3",
    r"Platform=x64",
    r"UCRTVersion=10.0.22621.0",
    r"USERNAME=张三",
    r"VCToolsInstallDir=" + VS + r"\VC\Tools\MSVC\14.38.33130" + "\\",
    r"VSCMD_ARG_TGT_ARCH=x64",
    r"WindowsSdkDir=C:\Program Files (x86)\Windows Kits\10" + "\\",
    "",
])


def test_vcvars_script_is_under_the_install():
    assert vcvars_script(VS) == VS + r"\VC\Auxiliary\Build\vcvars64.bat"
    assert ntpath.isabs(vcvars_script(VS))


def test_set_listing_parsed_without_case_and_without_cmds_drive_entries():
    env = parse_set_output(SET_AFTER_VCVARS)
    assert "PATH" in env and "Path" not in env  # one spelling: a child must not get two PATHs
    assert env["PATH"].startswith(VS + r"\VC\Tools\MSVC")
    assert not any(k.startswith("=") for k in env)
    assert env["USERNAME"] == "张三"


def test_build_env_takes_the_compiler_variables_only():
    env = msvc_build_env(VS, SET_AFTER_VCVARS)
    assert env is not None
    assert {"PATH", "INCLUDE", "LIB", "LIBPATH", "VCTOOLSINSTALLDIR", "WINDOWSSDKDIR", "UCRTVERSION",
            "VSCMD_ARG_TGT_ARCH"} <= set(env)
    assert env["DISTUTILS_USE_SDK"] == "1"  # torch's cpp_extension then uses this cl.exe
    assert "USERNAME" not in env and "ALLUSERSPROFILE" not in env  # nothing personal beyond what a build needs


def test_a_vcvars_that_set_up_nothing_is_refused():
    broken = "\r\n".join(ln for ln in SET_AFTER_VCVARS.splitlines() if not ln.startswith(("INCLUDE=", "LIB=")))
    assert msvc_build_env(VS, broken) is None


@pytest.fixture(scope="module")
def tables():
    from envdoctor.rules import load_tables

    return load_tables()


def test_a_windows_plan_builds_in_the_vs_install_environment(tables):
    from envdoctor.build.spec import decide
    from tests.test_build import _recorded

    report = _recorded("seed_windows_py312_torch251_mmcvfull172.json")  # the seed case, recorded
    host = BuildHost(cores=8, mem_available_mib=None, disk_free_mib=100_000, cxx=VS, cxx_version="MSVC", msvc=VS)
    spec = decide(report, tables, host, cpu=True)
    assert spec.msvc_install == VS and "vcvars64" in spec.why["compiler"]
    assert not any("MSVC is missing" in b for b in spec.blockers)
    on_path = BuildHost(cores=8, mem_available_mib=None, disk_free_mib=100_000, cxx=VS + r"\cl.exe",
                        cxx_version="MSVC", msvc=VS + r"\cl.exe")
    assert decide(report, tables, on_path, cpu=True).msvc_install is None  # a Developer prompt: already set up
