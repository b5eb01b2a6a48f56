"""Choosing the interpreter (issue 12 item 3): candidates are tried before one is used, the Store's
App Execution Alias stub is passed over, pyenv-win's .bat shims are resolved, the bootstrap goes as
a file (never a multi-line -c), and conda's python.exe at the prefix root vs a venv's Scripts\\.

Real stub executables and real pyenv-win directory layouts run here where the logic is platform-neutral
(Linux exit codes are 8 bits, so the stub exits 9009 % 256); Windows path rules go through ntpath."""

from __future__ import annotations

import ntpath
import os
import sys
import time
from pathlib import Path

import pytest

from envdoctor.probe import choose
from envdoctor.probe.target import RunningScript, Target
from tests.conftest import need_python
from tests.test_probe_target import NO_ACTIVE, quick_json

STUB = "#!/bin/sh\necho 'Python was not found; run without arguments to install from the Microsoft Store, " \
       "or disable this shortcut from Settings > Manage App Execution Aliases.' >&2\nexit 41\n"


def test_a_stub_first_on_path_is_passed_over_for_the_python_after_it(tmp_path):
    stubs, real = tmp_path / "WindowsApps", tmp_path / "bin"
    stubs.mkdir()
    real.mkdir()
    (stubs / "python").write_text(STUB)
    (stubs / "python").chmod(0o755)
    (real / "python").symlink_to(need_python("3.13"))
    data = quick_json(env={**NO_ACTIVE, "PATH": f"{stubs}{os.pathsep}{real}"})
    assert data["python"]["selected_by"] == "PATH" and data["python"]["version"].startswith("3.13.")
    assert any("Python was not found" in n and "passed over" in n for n in data["python"]["selection_notes"])


def test_a_venv_whose_interpreter_does_not_run_is_passed_over(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 3\n")
    (venv / "bin" / "python").chmod(0o755)
    real = tmp_path / "bin"
    real.mkdir()
    (real / "python").symlink_to(need_python("3.13"))
    assert choose.try_interpreter(str(venv / "bin" / "python")) == "exit 3"
    data = quick_json(env={**NO_ACTIVE, "VIRTUAL_ENV": str(venv), "PATH": str(real)})
    assert data["python"]["selected_by"] == "PATH", data["python"]
    assert any("VIRTUAL_ENV" in n and "passed over: exit 3" in n for n in data["python"]["selection_notes"])


WIN = r"C:\Users\张三\AppData\Local"


@pytest.mark.parametrize("path, alias", [
    (WIN + r"\Microsoft\WindowsApps\python.exe", True),
    (WIN.upper() + r"\MICROSOFT\WINDOWSAPPS\python3.12.exe", True),
    (r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python.3.12_3.12.2288.0_x64__qbz5n2kfra8p0\python.exe",
     False),  # the Store Python itself
    (WIN + r"\Programs\Python\Python312\python.exe", False),
])
def test_the_store_alias_is_recognised_by_its_path(path, alias):
    assert choose.is_store_alias(path, ntpath) is alias


def test_a_pyenv_win_shim_is_recognised_and_resolved(tmp_path):
    assert choose.is_pyenv_win_shim(r"C:\Users\张三\.pyenv\pyenv-win\shims\python.bat", ntpath)
    assert not choose.is_pyenv_win_shim(r"C:\Users\张三\.pyenv\pyenv-win\versions\3.12.2\python.exe", ntpath)
    root = tmp_path / ".pyenv" / "pyenv-win"
    (root / "shims").mkdir(parents=True)
    shim = root / "shims" / "python.bat"
    shim.write_text("@echo off\r\npyenv exec %~n0 %*\r\n")
    for v in ("3.11.9", "3.12.2"):
        (root / "versions" / v).mkdir(parents=True)
        (root / "versions" / v / "python.exe").write_bytes(b"MZ")
    (root / "version").write_text("3.11.9\n")
    project = tmp_path / "work" / "E2FGVI" / "sub"
    project.mkdir(parents=True)
    exe, _ = choose.resolve_pyenv_win_shim(str(shim), str(project), {})
    assert exe == str(root / "versions" / "3.11.9" / "python.exe")  # the global version
    (tmp_path / "work" / "E2FGVI" / ".python-version").write_text("3.12.2\n")
    exe, _ = choose.resolve_pyenv_win_shim(str(shim), str(project), {})
    assert exe == str(root / "versions" / "3.12.2" / "python.exe")  # the project's, found from a subdirectory
    assert choose.resolve_pyenv_win_shim(str(shim), str(project), {"PYENV_VERSION": "3.10.0"}) == (
        None, "a pyenv-win shim for version 3.10.0, which is not installed")


def test_conda_keeps_python_exe_at_the_root_a_venv_in_scripts():
    conda = r"C:\Users\张三\miniconda3\envs\open mmlab"
    assert choose.interpreter_layout(conda, windows=True, venv=False, flavour=ntpath)[0] == conda + r"\python.exe"
    venv = r"\\server\share\envs\e2fgvi"
    assert choose.interpreter_layout(venv, windows=True, venv=True, flavour=ntpath)[0] == venv + r"\Scripts\python.exe"


def test_a_windows_layout_is_found_on_disk(tmp_path):
    """The same files on this disk: a venv's Scripts/python.exe wins over a stray python.exe at its root."""
    venv = tmp_path / "venv"
    (venv / "Scripts").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = C:\\Python312\n")
    (venv / "Scripts" / "python.exe").write_bytes(b"MZ")
    (venv / "python.exe").write_bytes(b"MZ")
    assert choose.interpreter_in(str(venv)) == str(venv / "Scripts" / "python.exe")
    (venv / "pyvenv.cfg").unlink()  # conda: python.exe at the root
    assert choose.interpreter_in(str(venv)) == str(venv / "python.exe")


def test_the_bootstrap_is_a_file_not_a_multi_line_argument(tmp_path):
    (tmp_path / "slowmod.py").write_text("import time\ntime.sleep(2)\n")
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py", ["module", "slowmod", "30", str(tmp_path)],
                        40, out_is_dir=True)
    try:
        time.sleep(0.3)
        argv = Path(f"/proc/{run.proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    finally:
        finished = run.wait()
    assert not any(b"\n" in a for a in argv) and b"-c" not in argv
    assert argv[1].endswith(b"bootstrap.py")
    assert (finished.files.get("module.json") or {}).get("done")


def test_python_given_as_a_pyenv_win_shim_probes_the_version_it_stands_for(tmp_path):
    """`--python …\\pyenv-win\\shims\\python.bat`: the same tree on this disk, the version's python.exe a link to
    a real 3.13 (the resolution is the file-system part, platform-neutral)."""
    root = tmp_path / ".pyenv" / "pyenv-win"
    (root / "shims").mkdir(parents=True)
    (root / "shims" / "python.bat").write_text("@echo off\r\npyenv exec %~n0 %*\r\n")
    (root / "shims" / "python.bat").chmod(0o755)  # Windows runs a .bat by its name
    (root / "versions" / "3.13.1").mkdir(parents=True)
    (root / "versions" / "3.13.1" / "python.exe").symlink_to(need_python("3.13"))
    (root / "version").write_text("3.13.1\n")
    data = quick_json("--python", str(root / "shims" / "python.bat"), env=NO_ACTIVE)
    assert data["python"]["version"].startswith("3.13.")
    (root / "version").write_text("3.9.0\n")
    from tests.conftest import run_cli

    proc = run_cli("check", "--quick", "--python", str(root / "shims" / "python.bat"), env=NO_ACTIVE)
    assert proc.returncode == 2 and "version 3.9.0, which is not installed" in proc.stderr


STORE_PY = (r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python.3.12_3.12.2032.0_x64__qbz5n2kfra8p0"
            r"\python.exe")


def test_a_store_pythons_probe_results_do_not_go_through_temp():
    """Store Python's writes under AppData (where %TEMP% is) are redirected per package: its probe writes
    under %USERPROFILE%\\.envdoctor\\tmp instead, for the install and for its alias alike."""
    from envdoctor.probe.target import scratch_root

    env = {"USERPROFILE": r"C:\Users\张三", "TEMP": r"C:\Users\张三\AppData\Local\Temp"}
    want = r"C:\Users\张三\.envdoctor\tmp"
    assert scratch_root(STORE_PY, env, "win32") == want
    assert scratch_root(r"C:\Users\张三\AppData\Local\Microsoft\WindowsApps\python3.12.exe", env, "win32") == want
    assert scratch_root(r"C:\Python312\python.exe", env, "win32") is None  # python.org's: %TEMP% is fine
    assert scratch_root(STORE_PY, env, "linux") is None


def test_the_probe_scratch_directory_goes_where_scratch_root_says(tmp_path, monkeypatch):
    """The wiring, with a real probe: the scratch directory (bootstrap, results) is created under the root."""
    from envdoctor.probe import target as target_mod

    root = tmp_path / "profile" / ".envdoctor" / "tmp"
    monkeypatch.setattr(target_mod, "scratch_root", lambda exe: str(root))
    (tmp_path / "quickmod.py").write_text("VALUE = 1\n")
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py",
                        ["module", "quickmod", "30", str(tmp_path)], 40, out_is_dir=True)
    try:
        assert Path(run.scratch).parent == root and (Path(run.scratch) / "bootstrap.py").is_file()
    finally:
        finished = run.wait()
    assert (finished.files.get("module.json") or {}).get("done")
    assert list(root.iterdir()) == []  # removed afterwards, like any scratch directory
