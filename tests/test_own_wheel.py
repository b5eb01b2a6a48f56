"""envdoctor installs the compat wheel without pip (envdoctor/fix/own_wheel.py): what it writes is what real pip
writes for the same wheel, real pip sees and removes it, and a kill half-way leaves what recovery expects.

Real venvs (the cached `bare` one, copied), real pip, a wheel made by envdoctor's own build_wheel.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envdoctor.fix import own_wheel, owned
from envdoctor.fix.result import FixFailed
from envdoctor.fix.wheels import build_wheel
from envdoctor.probe import Target, target_layout
from tests.conftest import ROOT, real_env
from tests.envs import site_packages
from tests.wheelfactory import hash_of, tree_listing

PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _env(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(real_env("bare"), dest, symlinks=True)
    return dest


def _wheel(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    (staging / "edown" / "sub").mkdir(parents=True)
    (staging / "edown" / "__init__.py").write_text("from .sub.mod import VALUE\n")
    (staging / "edown" / "sub" / "__init__.py").write_text("")
    (staging / "edown" / "sub" / "mod.py").write_text("VALUE = 42\n" + "# padding\n" * 400)
    (staging / "edown" / "data.txt").write_text("not python\n")
    (staging / "edown" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (staging / "edown" / "tool.sh").chmod(0o755)
    (staging / "edown.pth").write_text("import os; os.environ.setdefault('EDOWN', 'ran')\n")
    return build_wheel(staging, "edown", "1.0", tmp_path / "wheels")


def _pip(env: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    return subprocess.run([str(env / "bin" / "python"), "-m", "pip", *args], capture_output=True, text=True,
                          env={**clean, **PIP_ENV})


def _record_paths(site: Path) -> set[str]:
    [info] = site.glob("edown-1.0.dist-info")
    with open(info / "RECORD", newline="") as f:
        return {row[0] for row in csv.reader(f) if row}


def test_it_writes_what_pip_writes_and_pip_sees_and_removes_it(tmp_path):
    wheel = _wheel(tmp_path)
    mine, pips = _env(tmp_path, "mine"), _env(tmp_path, "pips")
    site, site_pip = site_packages(mine), site_packages(pips)
    original = hash_of(tree_listing(site))
    layout = target_layout(Target(str(mine / "bin" / "python"), "--python"))
    assert layout.bytecode and layout.bytecode["magic"] == importlib.util.MAGIC_NUMBER.hex()  # the same Python here

    written = own_wheel.install(wheel, str(site), layout.bytecode)
    res = _pip(pips, "install", "--no-index", "--no-deps", str(wheel))
    assert res.returncode == 0, res.stdout + res.stderr

    assert all(Path(p).is_file() for p in written)
    ours, theirs = tree_listing(site), tree_listing(site_pip)
    new_ours = {k: v for k, v in ours.items() if k.startswith("edown")}
    new_theirs = {k: v for k, v in theirs.items() if k.startswith("edown")}
    info = "edown-1.0.dist-info"
    # the same paths (pip alone writes direct_url.json: where it got the wheel from), the same bytes and modes
    # for the wheel's own files; byte-code for every .py file in both (its bytes hold the source's mtime)
    assert set(new_ours) == set(new_theirs) - {f"{info}/direct_url.json"}
    for path, state in new_ours.items():
        if not path.endswith(".pyc") and path.split("/")[-1] not in ("RECORD", "INSTALLER"):
            assert state == new_theirs[path], path
    assert sum(p.endswith(".pyc") for p in new_ours) == 3
    assert (site / info / "INSTALLER").read_text() == "envdoctor\n"
    assert _record_paths(site) == _record_paths(site_pip) - {f"{info}/direct_url.json"}

    # it runs (the .pth too), and pip knows it
    code = "import os, edown; print(edown.VALUE, os.environ['EDOWN'])"
    run = subprocess.run([str(mine / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert run.stdout.split() == ["42", "ran"], run.stderr
    show = _pip(mine, "show", "-f", "edown")
    assert show.returncode == 0 and "Version: 1.0" in show.stdout and "edown/sub/mod.py" in show.stdout
    assert _pip(mine, "check").returncode == 0
    gone = _pip(mine, "uninstall", "-y", "edown")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert hash_of(tree_listing(site)) == original  # every file it wrote, byte-code included, was in its RECORD


@pytest.mark.parametrize("bytecode", [None, {"magic": "0d0d0d0a", "tag": "cpython-399"}])
def test_no_byte_code_unless_the_target_is_this_python(tmp_path, bytecode):
    wheel = _wheel(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    own_wheel.install(wheel, str(site), bytecode)
    assert not list(site.rglob("__pycache__")) and not list(site.rglob("*.pyc"))
    assert (site / "edown" / "sub" / "mod.py").exists()
    assert os.stat(site / "edown" / "tool.sh").st_mode & 0o111  # the executable bit, as pip keeps it


def test_it_refuses_what_only_pip_should_install(tmp_path):
    wheel = _wheel(tmp_path)
    site = tmp_path / "site"
    (site / "edown").mkdir(parents=True)
    (site / "edown" / "__init__.py").write_text("# the user's\n")
    with pytest.raises(FixFailed, match="exists"):
        own_wheel.install(wheel, str(site), None)
    assert (site / "edown" / "__init__.py").read_text() == "# the user's\n"

    staged = tmp_path / "scripts"
    staged.mkdir()
    (staged / "x.py").write_text("")
    entry_points = {"edscripts-1.0.dist-info/entry_points.txt": b"[console_scripts]\nedx = x:main\n"}
    scripts = build_wheel(staged, "edscripts", "1.0", tmp_path / "w2", extra_files=entry_points)
    assert own_wheel.unfit(scripts) == "it has scripts"
    with pytest.raises(FixFailed, match="scripts"):
        own_wheel.install(scripts, str(tmp_path / "site2"), None)
    assert not (tmp_path / "site2").exists()

    # a member that would land outside site-packages (a hand-made archive: build_wheel never makes one)
    evil = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.py", "")
        zf.writestr("evil-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
        zf.writestr("evil-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        zf.writestr("evil-1.0.dist-info/RECORD", "../escaped.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n")
    (tmp_path / "site3").mkdir()
    with pytest.raises(FixFailed, match="outside"):
        own_wheel.install(evil, str(tmp_path / "site3"), None)
    assert not (tmp_path / "escaped.py").exists()


def test_a_member_that_does_not_match_the_wheels_record_is_not_written(tmp_path):
    wheel = _wheel(tmp_path)
    bad = tmp_path / "bad" / wheel.name
    bad.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        for zi in src.infolist():
            data = src.read(zi)
            dst.writestr(zi, b"VALUE = 43\n" if zi.filename == "edown/sub/mod.py" else data)
    site = tmp_path / "site"
    site.mkdir()
    with pytest.raises(FixFailed, match="does not match"):
        own_wheel.install(bad, str(site), None)
    assert not (site / "edown" / "sub" / "mod.py").exists()


def test_killed_half_way_it_leaves_one_short_file_that_recovery_knows_for_its_own(tmp_path):
    """ENVDOCTOR_FIX_CRASH_AT=install:during: SIGKILL half-way through the second file. The first is whole, the
    second holds a proper prefix of its member, nothing after it exists: what fix/owned.py expects of a pip
    killed while copying (in_flight, cut_off), so a recovery takes exactly these for the transaction's."""
    wheel = _wheel(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    code = ("import sys; from pathlib import Path; from envdoctor.fix import own_wheel; "
            "own_wheel.install(Path(sys.argv[1]), sys.argv[2], None)")
    proc = subprocess.run([sys.executable, "-c", code, str(wheel), str(site)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "ENVDOCTOR_FIX_CRASH_AT": "install:during"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if not n.endswith("/")]
        first, second = (site / members[0], site / members[1])
        assert first.read_bytes() == zf.read(members[0])
        whole = zf.read(members[1])
        assert 0 < second.stat().st_size < len(whole) and second.read_bytes() == whole[: second.stat().st_size]
    assert not any((site / m).exists() for m in members[2:])
    intent = owned.wheel_intent(wheel, str(site), str(tmp_path / "bin"))
    states = owned.in_flight([intent])
    assert owned.cut_off(str(second), states[str(second)])
    assert owned.matches(owned.state_of(str(first)), states[str(first)][0])


def test_another_python_compiles_its_own_byte_code(tmp_path, monkeypatch):
    """Where envdoctor's Python is not the target's (3.12 here), the target compiles what envdoctor wrote, as pip
    has it do: byte-code pip's RECORD would list, so a rollback, an undo or `pip uninstall` removes it too."""
    from envdoctor.fix.pip_runner import Pip
    from tests.conftest import need_python

    venv = tmp_path / "v312"
    subprocess.run([str(need_python("3.12")), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    layout = target_layout(Target(python, "--python"))
    assert layout.bytecode and layout.bytecode["tag"] == "cpython-312"
    assert layout.bytecode["magic"] != importlib.util.MAGIC_NUMBER.hex()
    site = Path(layout.paths["purelib"])
    monkeypatch.setenv("PYTHONOPTIMIZE", "1")  # the user's setting: not what pip's RECORD would list
    pip = Pip(python)
    written = own_wheel.install(_wheel(tmp_path), str(site), layout.bytecode,
                                compile_in_target=lambda paths: pip.compile(paths, "install-compile"))
    pycs = sorted(str(p) for p in site.rglob("*.pyc"))
    assert len(pycs) == 3 and all(p.endswith(".cpython-312.pyc") for p in pycs)
    assert set(pycs) <= set(written)
    assert {os.path.relpath(p, site) for p in pycs} <= _record_paths(site)
    assert pip.calls and pip.calls[0].argv[1:4] == ["-m", "compileall", "-q"]
    before = tree_listing(site)
    run = subprocess.run([python, "-c", "import edown; print(edown.VALUE)"], capture_output=True, text=True)
    assert run.stdout.strip() == "42", run.stderr
    assert tree_listing(site) == before  # its byte-code was there: the import wrote nothing


def test_what_is_written_last_and_where_envdoctor_does_not_write(tmp_path):
    """The root .pth goes last (an installer killed before it leaves no .pth importing a missing package); the
    .dist-info files are renamed into place under names a recovery knows for pip's temporary files; the paths
    checked before writing include INSTALLER, REQUESTED and RECORD; an externally managed Python (PEP 668: pip
    refuses it) and a venv are told apart."""
    from envdoctor.fix.recover import _pip_temp_file

    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".dist-info/" not in n]
    assert names[-1] == "edown.pth" and len(names) > 1
    site = tmp_path / "site"
    site.mkdir()
    targets = own_wheel.targets(wheel, str(site))
    info = site / "edown-1.0.dist-info"
    assert {str(info / n) for n in ("INSTALLER", "REQUESTED", "RECORD", "METADATA")} <= set(targets)
    assert _pip_temp_file(str(info / "RECORD") + "0123abcd.tmp", {str(info / "RECORD")})
    own_wheel.install(wheel, str(site), None)
    assert not list(info.glob("*.tmp"))

    venv = target_layout(Target(str(real_env("bare") / "bin" / "python"), "--python"))
    assert venv.externally_managed is False
    system = Path("/usr/bin/python3")
    if not system.exists():
        pytest.skip("no system Python here")
    marker = any(Path(p, "EXTERNALLY-MANAGED").is_file() for p in Path("/usr/lib").glob("python3*"))
    assert target_layout(Target(str(system), "--python")).externally_managed is marker
