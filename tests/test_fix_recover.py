"""An interrupted fix never costs the user what they did afterwards (issue 10, section 1).

The real scenario: a copy of the cached torch 2.13 + mmcv-lite 2.2.0 venv, `envdoctor fix --apply --yes
--strategy compat` stopped by a real signal while it verifies, then the user installs with real pip
(`--no-deps`) a new distribution (six) and a second version of one that is there (cycler, which
matplotlib needs), both built by tests/wheelfactory's `build_wheel`. `check` must change nothing and
report ED601; `fix --recover` must remove only what the fix wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, journals, run_cli, validate_report
from tests.envs import site_packages
from tests.wheelfactory import hash_of, tree_listing

ISOLATED_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
COMPAT_FILES = ("_envdoctor_compat", "_envdoctor_compat.pth")


def wait_for(env: Path, step: str, proc: subprocess.Popen, timeout: float = 240, count: int = 1) -> None:
    """Until the `count`-th journal has begun `step` (a real run, observed from outside)."""
    deadline = time.time() + timeout
    while True:
        js = journals(env)
        if len(js) >= count and any(s["step"] == step and s["phase"] == "begin" for s in js[-1]["steps"]):
            return
        if proc.poll() is not None or time.time() > deadline:
            out, err = proc.communicate()
            pytest.fail(f"the fix never reached {step} (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.05)


def start_fix(env: Path, *args: str, pause: str) -> subprocess.Popen:
    penv = {k: v for k, v in os.environ.items() if k != "ENVDOCTOR_DEBUG"}
    penv.update(PYTHONPATH=str(ROOT), ENVDOCTOR_FIX_PAUSE_AT=pause)
    return subprocess.Popen([sys.executable, "-m", "envdoctor", "fix", "--python", str(env), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=penv)


def user_pip(env: Path, *wheels: Path) -> None:
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    proc = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           *map(str, wheels)], capture_output=True, text=True, env={**env_vars, **ISOLATED_PIP})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def py(env: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "python"), "-B", "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def user_wheels(site: Path, dest: Path) -> tuple[Path, Path]:
    """six 1.17.0 (new to the env) and cycler 0.11.0 built from the installed cycler's own sources."""
    from envdoctor.fix.wheels import build_wheel

    six = dest / "six"
    six.mkdir(parents=True)
    (six / "six.py").write_text('"""the user\'s six"""\n__version__ = "1.17.0"\n')
    cyc = dest / "cycler"
    shutil.copytree(site / "cycler", cyc / "cycler", ignore=shutil.ignore_patterns("__pycache__"))
    return build_wheel(six, "six", "1.17.0", dest / "out"), build_wheel(cyc, "cycler", "0.11.0", dest / "out")


def users_part(listing: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in listing.items() if k.split("/")[0].split("-")[0] in ("six.py", "six", "cycler")}


# Big packages nothing in these tests writes to are symlinked into the copies (a full copy of torch
# costs ~30 s per test); the fix, the recovery and the user's pip only touch other paths.
SHARED = ("torch", "sympy", "cv2", "opencv_python.libs")


def light_clone(name: str, dest: Path) -> Path:
    from tests.conftest import real_env

    src = real_env(name)
    src_site = site_packages(src)
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == src_site and n in SHARED])
    (dest / ".ready").unlink(missing_ok=True)
    for n in SHARED:
        if (src_site / n).exists():
            (site_packages(dest) / n).symlink_to(src_site / n)
    return dest


@pytest.fixture
def lite(tmp_path: Path) -> Path:
    return light_clone("mmcv-lite", tmp_path / "env")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT twice"])
def test_interrupted_fix_leaves_what_the_user_installed_afterwards(lite, tmp_path, how):
    env, site = lite, site_packages(lite)
    original = tree_listing(site)
    pause = "verify=120" + (",rollback=120" if how == "SIGINT twice" else "")
    proc = start_fix(env, "--apply", "--yes", "--strategy", "compat", pause=pause)
    wait_for(env, "verify", proc)
    assert (site / "_envdoctor_compat.pth").exists()  # half-done: installed, not verified
    if how == "SIGKILL":
        proc.send_signal(signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGINT)
        wait_for(env, "rollback", proc)  # the rollback has begun ...
        proc.send_signal(signal.SIGINT)  # ... and a second Ctrl-C stops it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (-signal.SIGKILL if how == "SIGKILL" else 130), out + err
    if how != "SIGKILL":
        assert "fix --recover" in out + err
    assert journals(env)[-1]["state"] not in ("rolled_back", "aborted", "committed")

    six, cycler = user_wheels(site, tmp_path / "user")
    user_pip(env, six, cycler)
    assert py(env, "import six, cycler, matplotlib.pyplot").returncode == 0
    mine = users_part(tree_listing(site))
    assert any(k.startswith("cycler-0.11.0.dist-info") for k in mine)

    # check: reads only, says what was half-done, since when and how to recover; exit 1
    before_check = hash_of(tree_listing(site))
    state_before = sorted(p.name for p in (env / ".envdoctor").rglob("*"))
    chk = run_cli("check", "--python", str(env), "--format", "json")
    assert hash_of(tree_listing(site)) == before_check, "check changed the environment"
    assert users_part(tree_listing(site)) == mine
    assert chk.returncode == 1, chk.stderr
    data = json.loads(chk.stdout)
    validate_report(data)
    [ed601] = [f for f in data["findings"] if f["id"] == "ED601"]
    assert ed601["severity"] == "error"
    assert ed601["evidence"]["interrupted_at"].startswith(("verify", "rollback")) and ed601["evidence"]["since"]
    assert any("envdoctor fix --recover --python" in c for fx in ed601["fixes"] for c in fx["commands"])
    assert "writable" not in json.dumps(ed601["fixes"])  # nothing here is read-only
    assert "six.py" in ed601["detail"] and "cycler" in ed601["detail"]  # listed as the user's
    assert hash_of(tree_listing(site)) == before_check
    assert sorted(p.name for p in (env / ".envdoctor").rglob("*")) == state_before
    again = run_cli("check", "--python", str(env), "--format", "json")  # and again: still reported, no loop
    assert again.returncode == 1 and hash_of(tree_listing(site)) == before_check

    rec = run_cli("fix", "--recover", "--python", str(env))
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "rolled back" in rec.stdout and "six.py" in rec.stdout
    now = tree_listing(site)
    assert users_part(now) == mine  # every byte of what the user installed is still there
    assert not any(k.startswith(COMPAT_FILES) or k.startswith("envdoctor_compat-") for k in now)
    # everything else is as before the fix
    rest = {k: v for k, v in now.items() if k not in mine and "__pycache__" not in k}
    assert rest == {k: v for k, v in original.items() if k.split("/")[0].split("-")[0] not in ("cycler",)
                    and "__pycache__" not in k}
    assert py(env, "import six, cycler, matplotlib.pyplot; assert six.__version__ == '1.17.0'").returncode == 0
    done = run_cli("check", "--python", str(env), "--format", "json")
    assert not [f for f in json.loads(done.stdout)["findings"] if f["id"] == "ED601"]


def test_one_signal_during_apply_rolls_back_before_exiting(lite):
    env, site = lite, site_packages(lite)
    h = hash_of(tree_listing(site))
    for n, sig in enumerate((signal.SIGINT, signal.SIGTERM), 1):
        proc = start_fix(env, "--apply", "--yes", "--strategy", "compat", pause="verify=120")
        wait_for(env, "verify", proc, count=n)
        assert (site / "_envdoctor_compat.pth").exists()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, out + err
        assert "rolled back" in out
        assert journals(env)[-1]["state"] == "rolled_back"
        assert hash_of(tree_listing(site)) == h, sig


# --- conflicts and directories that cannot be written (stand-in compat layer: fast) -----------------

from tests.test_fix_apply import STANDIN_HOOK, _pip_setup  # noqa: E402


@pytest.fixture(scope="session")
def nops(tmp_path_factory) -> Path:
    """The stand-in torch 2.13 + mmcv 2.2.0 without ops (tests/wheelfactory.py), built once."""
    from tests.conftest import real_env
    from tests.wheelfactory import build_all

    bare = real_env("bare")
    built = build_all(tmp_path_factory.mktemp("wheels"), str(bare / "bin" / "python"))
    dest = tmp_path_factory.mktemp("templates") / "nops"
    shutil.copytree(bare, dest, symlinks=True)
    (dest / ".ready").unlink(missing_ok=True)
    _pip_setup(dest, "--no-index", "--no-deps", "--find-links", str(built["broken"]), "torch==2.13.0+cpu",
               "mmcv==2.2.0")
    return dest


def clone(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "env"
    shutil.copytree(template, dest, symlinks=True)
    return dest


def standin(tmp_path: Path) -> dict[str, str]:
    src = tmp_path / "standin"
    (src / "_envdoctor_compat").mkdir(parents=True, exist_ok=True)
    (src / "_envdoctor_compat" / "__init__.py").write_text("")
    (src / "_envdoctor_compat" / "hook.py").write_text(STANDIN_HOOK)
    (src / "_envdoctor_compat.pth").write_text("import _envdoctor_compat.hook as h; h.install()\n")
    return {"ENVDOCTOR_COMPAT_SOURCE": str(src)}


def crashed_compat_fix(nops: Path, tmp_path: Path, at: str = "verify") -> tuple[Path, Path, str]:
    env = clone(nops, tmp_path)
    site = site_packages(env)
    h = hash_of(tree_listing(site))
    proc = run_cli("fix", "--python", str(env), "--strategy", "compat", "--apply", "--yes",
                   env={**standin(tmp_path), "ENVDOCTOR_FIX_CRASH_AT": at})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "envdoctor writes its files" in proc.stdout  # the compat wheel is envdoctor's own install
    return env, site, h


def test_a_path_changed_since_is_a_conflict_never_overwritten(nops, tmp_path):
    env, site, original = crashed_compat_fix(nops, tmp_path)
    edited = site / "_envdoctor_compat" / "hook.py"
    edited.write_text("# the user's own edit\n")
    half = hash_of(tree_listing(site))

    chk = run_cli("check", "--python", str(env), "--format", "json")
    [ed601] = [f for f in json.loads(chk.stdout)["findings"] if f["id"] == "ED601"]
    cmds = [c for fx in ed601["fixes"] for c in fx["commands"]]
    assert any("--on-conflict keep" in c for c in cmds) and any("--on-conflict restore" in c for c in cmds)
    assert str(edited) in ed601["evidence"]["conflicts"]

    rec = run_cli("fix", "--recover", "--python", str(env))
    assert rec.returncode == 1, rec.stdout + rec.stderr
    assert "nothing was changed" in rec.stdout and str(edited) in rec.stdout
    assert "--on-conflict keep" in rec.stdout and "--on-conflict restore" in rec.stdout
    assert hash_of(tree_listing(site)) == half  # no silent overwrite, no partial rollback
    again = run_cli("fix", "--recover", "--python", str(env))  # the same answer, not a loop
    assert again.returncode == 1 and hash_of(tree_listing(site)) == half
    applied = run_cli("fix", "--python", str(env), "--strategy", "compat", "--apply", "--yes", env=standin(tmp_path))
    assert applied.returncode == 1 and "Nothing applied" in applied.stdout  # not on top of a half-recovered env

    keep = run_cli("fix", "--recover", "--on-conflict", "keep", "--python", str(env))
    assert keep.returncode == 0, keep.stdout + keep.stderr
    assert edited.read_text() == "# the user's own edit\n"
    assert not (site / "_envdoctor_compat.pth").exists()
    assert not list(site.glob("envdoctor_compat-*.dist-info"))
    assert journals(env)[-1]["state"] == "rolled_back"


def test_conflict_restore_puts_back_the_state_before_the_fix(nops, tmp_path):
    env, site, original = crashed_compat_fix(nops, tmp_path)
    (site / "_envdoctor_compat" / "hook.py").write_text("# the user's own edit\n")
    rec = run_cli("fix", "--recover", "--on-conflict", "restore", "--python", str(env))
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert hash_of(tree_listing(site)) == original


def test_a_compat_fix_killed_while_envdoctor_writes_the_wheel_is_recovered(nops, tmp_path):
    """envdoctor writes the compat wheel itself (fix/own_wheel.py): killed half-way through its second file,
    the next `fix --recover` takes the short file and the whole one for the transaction's and removes them."""
    env, site, original = crashed_compat_fix(nops, tmp_path, "install:during")
    assert hash_of(tree_listing(site)) != original  # half-written: something to recover
    rec = run_cli("fix", "--recover", "--python", str(env))
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert hash_of(tree_listing(site)) == original
    assert journals(env)[-1]["state"] == "rolled_back"


def test_the_compat_layer_goes_into_an_environment_without_pip(nops, tmp_path):
    """A `uv venv` has no pip: the compat fix needs none (envdoctor writes its own wheel); a wheel fix would."""
    env = clone(nops, tmp_path)
    site = site_packages(env)
    for p in [site / "pip", *site.glob("pip-*.dist-info")]:
        shutil.rmtree(p)
    original = hash_of(tree_listing(site))
    applied = run_cli("fix", "--python", str(env), "--strategy", "compat", "--apply", "--yes", env=standin(tmp_path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Result: verified" in applied.stdout and "has no pip" not in applied.stdout
    assert (site / "_envdoctor_compat.pth").exists() and list(site.glob("envdoctor_compat-*.dist-info"))
    undo = run_cli("fix", "--undo", "--python", str(env))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert hash_of(tree_listing(site)) == original


def _read_only(site: Path, command: str) -> subprocess.CompletedProcess:
    """Run `command` with site-packages bind-mounted read-only (a private mount namespace; root only)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {site} {site} && "
                            f"mount -o remount,bind,ro {site} && touch {site}/x"], capture_output=True, text=True)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()[:200]}")
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {site} {site} && "
                           f"mount -o remount,bind,ro {site} && PYTHONPATH={ROOT} {command}"],
                          capture_output=True, text=True, timeout=300)


def test_a_recovery_that_cannot_write_says_why_and_changes_nothing(nops, tmp_path):
    env, site, original = crashed_compat_fix(nops, tmp_path)
    half = hash_of(tree_listing(site))
    ro = _read_only(site, f"{sys.executable} -m envdoctor fix --recover --python {env}")
    assert ro.returncode == 1, ro.stdout + ro.stderr
    assert "read-only file system" in ro.stdout and "nothing was changed" in ro.stdout
    assert f"envdoctor fix --recover --python {env}" in ro.stdout
    assert hash_of(tree_listing(site)) == half
    chk = run_cli("check", "--python", str(env), "--format", "json")
    [ed601] = [f for f in json.loads(chk.stdout)["findings"] if f["id"] == "ED601"]
    assert ed601["severity"] == "error"
    ok = run_cli("fix", "--recover", "--python", str(env))  # writable again: it finishes
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert hash_of(tree_listing(site)) == original


def test_a_refused_undo_says_read_only_not_changed(nops, tmp_path):
    env = clone(nops, tmp_path)
    site = site_packages(env)
    proc = run_cli("fix", "--python", str(env), "--strategy", "compat", "--apply", "--yes", env=standin(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fixed = hash_of(tree_listing(site))
    ro = _read_only(site, f"{sys.executable} -m envdoctor fix --undo --python {env}")
    assert ro.returncode == 1, ro.stdout + ro.stderr  # docs/fix.md: a refused undo exits 1
    assert "read-only file system" in ro.stdout and "changed after" not in ro.stdout
    assert hash_of(tree_listing(site)) == fixed
    assert run_cli("fix", "--undo", "--python", str(env)).returncode == 0


def test_a_pip_temp_file_beside_a_file_the_transaction_wrote_is_the_transactions():
    """pip dies with envdoctor now (kill -9 during install), possibly between writing `INSTALLER<8 chars>.tmp`
    and renaming it: that file is the transaction's to remove; other .tmp files are not."""
    from envdoctor.fix.recover import _pip_temp_file

    d = os.path.join(os.sep, "site", "pkg-1.0.dist-info")
    written = {os.path.join(d, "INSTALLER"), os.path.join(d, "RECORD")}
    assert _pip_temp_file(os.path.join(d, "INSTALLERa79duagi.tmp"), written)
    assert _pip_temp_file(os.path.join(d, "RECORDx2k9q1zz.tmp"), written)
    assert not _pip_temp_file(os.path.join(d, "notes.tmp"), written)  # not pip's naming: the user's
    assert not _pip_temp_file(os.path.join(d, "INSTALLERa79duagi"), written)
    assert not _pip_temp_file(os.path.join(os.sep, "site", "other", "INSTALLERa79duagi.tmp"), written)
    cache = os.path.join(os.sep, "site", "pkg", "__pycache__")
    pyc = os.path.join(cache, "part_05.cpython-311.pyc")  # a pip killed while compiling (seen in CI)
    assert _pip_temp_file(pyc + ".139721552491776", written | {pyc})
    assert not _pip_temp_file(pyc + ".139721552491776", written)  # a pyc the transaction did not write
    assert not _pip_temp_file(pyc + ".bak", written | {pyc})
    module = os.path.join(os.sep, "site", "pkg", "part_05.py")  # pip's RECORD lists the module, not its pyc
    assert _pip_temp_file(pyc + ".139721552491776", written | {module})
