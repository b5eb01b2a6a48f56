"""Which interpreter is probed, and what a bad one gives: real venvs, env vars, broken interpreters."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_python, run_cli


def make_venv(minor: str, dest: Path, *extra: str) -> Path:
    """A real, empty venv (no pip: fast) of pyenv's Python `minor`."""
    subprocess.run([str(need_python(minor)), "-m", "venv", "--without-pip", *extra, str(dest)], check=True)
    return dest


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def quick_json(*args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_cli("check", "--quick", "--format", "json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


NO_ACTIVE = {"VIRTUAL_ENV": "", "CONDA_PREFIX": ""}


# ------------------------------------------------------------------ selection


def test_python_option_accepts_a_venv_prefix(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    data = quick_json("--python", str(venv))
    assert data["python"]["selected_by"] == "--python"
    assert data["python"]["executable"] == str(venv / "bin" / "python")
    assert data["python"]["version"].startswith("3.12.") and data["python"]["is_venv"] is True


def test_python_option_accepts_a_name_on_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mypython3").symlink_to(need_python("3.13"))
    data = quick_json("--python", "mypython3", env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert data["python"]["version"].startswith("3.13.")


def test_active_virtual_env_is_the_default(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    data = quick_json(env={**NO_ACTIVE, "VIRTUAL_ENV": str(venv)})
    assert data["python"]["selected_by"] == "VIRTUAL_ENV"
    assert data["python"]["prefix"] == str(venv)


def test_conda_prefix_when_no_venv_is_active(tmp_path):
    # a prefix laid out like a conda env: bin/python and conda-meta/
    prefix = make_venv("3.12", tmp_path / "conda-env")
    (prefix / "conda-meta").mkdir()
    data = quick_json(env={**NO_ACTIVE, "CONDA_PREFIX": str(prefix)})
    assert data["python"]["selected_by"] == "CONDA_PREFIX"
    assert data["python"]["conda_prefix"] == str(prefix)


def test_virtual_env_beats_conda_prefix(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    conda = make_venv("3.13", tmp_path / "c")
    data = quick_json(env={"VIRTUAL_ENV": str(venv), "CONDA_PREFIX": str(conda)})
    assert data["python"]["selected_by"] == "VIRTUAL_ENV" and data["python"]["version"].startswith("3.12.")


def test_stale_virtual_env_falls_through_to_path_and_says_why(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(need_python("3.13"))
    gone = tmp_path / "deleted-venv"
    gone.mkdir()
    data = quick_json(env={**NO_ACTIVE, "VIRTUAL_ENV": str(gone), "PATH": str(bindir)})
    assert data["python"]["selected_by"] == "PATH"
    assert data["python"]["version"].startswith("3.13.")
    assert any("VIRTUAL_ENV" in n and "no interpreter" in n for n in data["python"]["selection_notes"])


def test_no_python_anywhere_probes_envdoctors_own_interpreter(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    data = quick_json(env={**NO_ACTIVE, "PATH": str(empty)})
    assert data["python"]["selected_by"] == "self"
    assert data["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]


def test_text_output_says_which_interpreter_and_why(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    proc = run_cli("check", "--quick", env={**NO_ACTIVE, "VIRTUAL_ENV": str(venv)})
    first = proc.stdout.splitlines()[0]
    assert str(venv / "bin" / "python") in first and "VIRTUAL_ENV" in first


# ------------------------------------------------------------------ bad input


def one_line_exit_2(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_interpreter_that_segfaults_at_start(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    (site_packages(venv) / "sitecustomize.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    one_line_exit_2(run_cli("check", "--python", str(venv)), "killed by SIGSEGV")


def test_real_python_whose_sitecustomize_aborts(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    (site_packages(venv) / "sitecustomize.py").write_text("import os\nos.abort()\n")
    one_line_exit_2(run_cli("check", "--python", str(venv)), "killed by SIGABRT")
    one_line_exit_2(run_cli("check", "--quick", "--python", str(venv)), "killed by SIGABRT")


def test_interpreter_that_hangs_is_cut_off(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    (site_packages(venv) / "sitecustomize.py").write_text("import time\ntime.sleep(60)\n")
    one_line_exit_2(run_cli("check", "--quick", "--timeout", "1", "--python", str(venv), timeout=30), "no answer")


def _tattler(tmp_path: Path) -> tuple[Path, Path]:
    """A real ELF program (not Python) that leaves a file behind if anything ever runs it."""
    src = tmp_path / "tattle.c"
    mark = tmp_path / "it-ran"
    src.write_text('#include <stdio.h>\nint main(void) { FILE *f = fopen("%s", "w"); if (f) fclose(f); '
                   'return 0; }\n' % mark)
    exe = tmp_path / "python3"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    return exe, mark


@pytest.mark.parametrize("command", [["check"], ["check", "--quick"], ["fix"], ["fix", "--undo"]])
def test_non_python_programs_are_refused_before_they_run(tmp_path, command):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    elf, elf_ran = _tattler(tmp_path)
    sh_ran = tmp_path / "sh-ran"
    sh = script(tmp_path / "script.sh", f"touch {sh_ran}")
    pyscript = tmp_path / "tool"
    py_ran = tmp_path / "py-ran"
    pyscript.write_text(f"#!{need_python('3.12')}\nimport pathlib\npathlib.Path({str(py_ran)!r}).touch()\n")
    pyscript.chmod(0o755)
    for target, says in ((elf, "neither linked to libpython"), ("/bin/bash", "neither linked to libpython"),
                         (sh, "a shell script (#!/bin/sh)"), (pyscript, "a Python script")):
        one_line_exit_2(run_cli(*command, "--python", str(target)), "not a Python interpreter", says)
    assert not elf_ran.exists() and not sh_ran.exists() and not py_ran.exists()


def test_a_venv_whose_python_is_replaced_by_a_shell_script_is_refused(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    exe = venv / "bin" / "python"
    exe.unlink()
    script(exe, "echo hello")
    one_line_exit_2(run_cli("check", "--quick", "--python", str(venv)), "not a Python interpreter", "shell script")


def test_shared_library_is_not_an_interpreter():
    lib = next((p for p in (need_python("3.12").parent.parent / "lib").glob("libpython3.12*.so*")), None)
    if lib is None:
        pytest.skip("this Python has no shared libpython")
    one_line_exit_2(run_cli("check", "--quick", "--python", str(lib)), "not a Python interpreter", "shared library")


def test_pyenv_shim_is_resolved_to_its_interpreter():
    shim = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "shims" / "python3.12"
    if not shim.exists():
        pytest.skip("no pyenv shims here")
    real = need_python("3.12")
    data = quick_json("--python", str(shim), env={"PYENV_VERSION": real.parent.parent.name})
    assert data["python"]["version"].startswith("3.12.")


def test_file_that_is_not_executable(tmp_path):
    f = tmp_path / "python"
    f.write_text("not a program")
    one_line_exit_2(run_cli("check", "--python", str(f)), "not an executable file")


def test_site_packages_that_is_a_broken_symlink(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    sp = site_packages(venv)
    sp.rmdir()
    sp.symlink_to(tmp_path / "gone")
    one_line_exit_2(run_cli("check", "--python", str(venv)), "cannot read the site-packages", "broken symbolic link")


def test_site_packages_that_is_a_file(tmp_path):
    venv = make_venv("3.12", tmp_path / "v")
    sp = site_packages(venv)
    sp.rmdir()
    sp.write_text("")
    one_line_exit_2(run_cli("check", "--quick", "--python", str(venv)), "not a directory")


def _can_drop_dac() -> bool:
    """root reads a mode-000 directory anyway; without CAP_DAC_OVERRIDE/READ_SEARCH it cannot."""
    if shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["setpriv", *DROP_DAC, "true"], capture_output=True)
    return probe.returncode == 0


DROP_DAC = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def test_site_packages_without_read_permission(tmp_path):
    if os.geteuid() == 0 and not _can_drop_dac():
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
    venv = make_venv("3.12", tmp_path / "v")
    sp = site_packages(venv)
    sp.chmod(0)
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT), VIRTUAL_ENV="", CONDA_PREFIX="")
        cmd = [sys.executable, "-m", "envdoctor", "check", "--python", str(venv)]
        if os.geteuid() == 0:
            cmd = ["setpriv", *DROP_DAC, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        one_line_exit_2(proc, "cannot read the site-packages", "Permission denied")
    finally:
        sp.chmod(stat.S_IRWXU)
