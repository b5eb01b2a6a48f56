"""`envdoctor fix` end to end: real pip of a real venv installing real wheels from a local directory.

The environments start from a copy of the cached `bare` venv (Python 3.11 + pip) with stand-in
torch / torchvision / mmcv wheels from tests/wheelfactory.py (mmcv's `_ext` is gcc-built). After
every fault, every file under site-packages (paths, bytes, modes, __pycache__ included) must be
exactly as before: `tree_hash`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import journals, real_env, run_cli, validate_report
from tests.envs import site_packages
from tests.wheelfactory import build_all, hash_of, tree_hash, tree_listing

ISOLATED_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _pip_setup(prefix: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(ISOLATED_PIP)
    subprocess.run([str(prefix / "bin" / "python"), "-m", "pip", "install", "-q", *args], check=True, env=env,
                   capture_output=True)


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> dict[str, Path]:
    bare = real_env("bare")
    return build_all(tmp_path_factory.mktemp("wheels"), str(bare / "bin" / "python"))


@pytest.fixture(scope="session")
def templates(tmp_path_factory, wheels) -> dict[str, Path]:
    """Broken environments, built once; tests work on copies."""
    bare = real_env("bare")
    root = tmp_path_factory.mktemp("templates")
    specs = {
        "nops": ["torch==2.13.0+cpu", "mmcv==2.2.0"],  # mmcv built without ops
        "tv": ["torch==2.13.0+cpu", "torchvision==0.29.1"],  # torchvision for another torch
    }
    out = {}
    for name, reqs in specs.items():
        dest = root / name
        shutil.copytree(bare, dest, symlinks=True)
        (dest / ".ready").unlink(missing_ok=True)
        _pip_setup(dest, "--no-index", "--no-deps", "--find-links", str(wheels["broken"]), *reqs)
        out[name] = dest
    # mmcv (no ops) and mmcv-lite installed over each other
    dest = root / "conflict"
    shutil.copytree(out["nops"], dest, symlinks=True)
    _pip_setup(dest, "--no-index", "--no-deps", "--find-links", str(wheels["broken"]), "mmcv-lite==2.2.0")
    out["conflict"] = dest
    return out


def clone(templates, name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(templates[name], dest, symlinks=True)
    return dest


def fix(env: Path, *args: str, extra_env=None, timeout=300) -> subprocess.CompletedProcess:
    return run_cli("fix", "--python", str(env), *args, env=extra_env, timeout=timeout)


def py(env: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "python"), "-B", "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def snapshot(site: Path) -> tuple[str, dict[str, str]]:
    listing = tree_listing(site)
    return hash_of(listing), listing


def assert_same_tree(site: Path, before_hash: str, before_list: dict[str, str]) -> None:
    now = tree_listing(site)
    if hash_of(now) != before_hash:
        diff = sorted(k for k in set(now) | set(before_list) if now.get(k) != before_list.get(k))
        pytest.fail(f"site-packages differs from before in {len(diff)} paths: {diff[:15]}")


def wheel_args(wheels, which: str = "index") -> tuple[str, ...]:
    return ("--pin", "mmcv==2.2.0", "--index-url", str(wheels[which]))


# --- the happy path -----------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h = tree_hash(site)
    proc = fix(env, *wheel_args(wheels))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mmcv._ext: missing" in out
    assert "-m pip uninstall -y mmcv" in out
    assert "--no-cache-dir --only-binary=:all: --no-index --find-links" in out and "mmcv==2.2.0" in out
    assert "undo:" in out and "verify:" in out and "Dry run: nothing was changed" in out
    assert tree_hash(site) == h
    assert not journals(env)


def test_wheel_fix_is_verified_then_undo_restores_byte_for_byte(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    assert "No module named 'mmcv._ext'" in py(env, "import mmcv.ops").stderr

    proc = fix(env, *wheel_args(wheels), "--apply", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Result: verified" in proc.stdout
    assert py(env, "import mmcv.ops, mmcv_fakedep").returncode == 0  # ops work; the missing requirement came too
    assert (site / "mmcv").joinpath("_ext.cpython-311-x86_64-linux-gnu.so").exists()
    [j] = journals(env)
    assert j["state"] == "committed"
    steps = [(s["step"], s["phase"]) for s in j["steps"]]
    assert steps == [("prepare", "begin"), ("prepare", "end"), ("manifest", "begin"), ("manifest", "end"),
                     ("backup", "begin"), ("backup", "end"), ("uninstall:mmcv", "begin"), ("uninstall:mmcv", "end"),
                     ("install", "begin"), ("install", "end"), ("verify", "begin"), ("verify", "end"),
                     ("commit", "begin"), ("commit", "end")]

    # a second run finds nothing to do
    again = fix(env, "--apply", "--yes")
    assert again.returncode == 0 and "nothing to fix" in again.stdout

    undo = fix(env, "--undo")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert_same_tree(site, h, listing)
    assert "No module named 'mmcv._ext'" in py(env, "import mmcv.ops").stderr
    assert fix(env, "--undo").returncode == 2  # nothing left to undo: one line, exit 2


def test_conflicting_distributions_are_all_removed_first(templates, wheels, tmp_path):
    env = clone(templates, "conflict", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uninstall -y mmcv-lite" in proc.stdout and "uninstall -y mmcv\n" in proc.stdout + "\n"
    listed = py(env, "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in m.distributions()))")
    assert "'mmcv-lite'" not in listed.stdout and "'mmcv'" in listed.stdout
    assert fix(env, "--undo").returncode == 0
    assert_same_tree(site, h, listing)


def test_json_format_carries_the_fix_result(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    result = data["fix"]["result"]
    assert result["status"] == "verified" and result["changes"]["added"] > 0
    assert data["fix"]["plan"]["actions"][0]["install"] == ["mmcv==2.2.0"]
    assert data["components"]["mmcv._ext"]["load"]["status"] == "ok"  # the after-probe
    assert not [f for f in data["findings"] if f["id"] == "ED601"]  # its own journal is not "interrupted"


def test_torchvision_that_does_not_pair_is_replaced(templates, wheels, tmp_path):
    env = clone(templates, "tv", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    proc = fix(env, "--pin", "torchvision==0.28.0", "--index-url", str(wheels["index"]), "--apply", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert py(env, "import torchvision; assert torchvision.__version__ == '0.28.0'").returncode == 0
    assert fix(env, "--undo").returncode == 0
    assert_same_tree(site, h, listing)


def test_a_change_to_torch_is_refused_without_the_flag(templates, wheels, tmp_path):
    env = clone(templates, "tv", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    # torchvision 0.29.1 requires torch>=2.14.0: installing it would replace torch
    proc = fix(env, "--pin", "torchvision==0.29.1", "--index-url", str(wheels["index"]), "--apply", "--yes")
    assert proc.returncode == 1
    assert "would change torch" in proc.stdout and "--allow-torch-change" in proc.stdout
    assert_same_tree(site, h, listing)
    assert journals(env)[-1]["state"] == "aborted"


# --- faults -------------------------------------------------------------------------------------


def test_pip_failing_half_way_is_rolled_back(templates, wheels, tmp_path):
    """mmcv and its requirement in one pip install; the requirement's wheel is corrupt half-way through."""
    # the fault is real: plain pip, on a copy, fails and leaves half-written files behind
    plain = clone(templates, "nops", tmp_path / "plain")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    proc = subprocess.run([str(plain / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
                           *map(str, sorted(wheels["corrupt"].glob("*.whl")))], capture_output=True, text=True,
                          env={**env, **ISOLATED_PIP})
    assert proc.returncode != 0 and "Bad CRC-32" in proc.stderr
    assert (site_packages(plain) / "mmcv_fakedep" / "__init__.py").exists()  # pip does not clean up

    env_dir = clone(templates, "nops", tmp_path)
    site = site_packages(env_dir)
    h, listing = snapshot(site)
    proc = fix(env_dir, "--pin", "mmcv==2.2.0", "--index-url", str(wheels["corrupt"]), "--apply", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pip install failed" in proc.stdout and "CRC" in proc.stdout
    j = journals(env_dir)[-1]
    assert j["state"] == "rolled_back"
    assert [s["step"] for s in j["steps"]].count("uninstall:mmcv") == 2  # the old mmcv was removed first
    logs = sorted((env_dir / ".envdoctor" / "txn" / j["id"] / "logs").iterdir())
    assert "Bad CRC-32" in logs[-1].read_text()  # pip's own log of the failed install is kept
    assert_same_tree(site, h, listing)


def test_a_wheel_whose_import_still_fails_is_rolled_back(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    idx = tmp_path / "idx"
    idx.mkdir()
    shutil.copy(next(wheels["badext"].glob("mmcv-*.whl")), idx)
    proc = fix(env, "--pin", "mmcv==2.2.0", "--index-url", str(idx), "--apply", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not confirm the fix" in proc.stdout and "undefined symbol" in proc.stdout
    assert "Result: rolled_back" in proc.stdout
    assert_same_tree(site, h, listing)


@pytest.mark.parametrize("where", ["install:end", "verify", "commit"])
def test_an_error_after_pip_is_rolled_back(templates, wheels, tmp_path, where):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes", extra_env={"ENVDOCTOR_FIX_FAIL_AT": where})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fault injected" in proc.stdout
    assert_same_tree(site, h, listing)


CRASH_POINTS = ["prepare", "manifest", "backup", "backup:end", "uninstall:mmcv", "uninstall:mmcv:end", "install",
                "install:during", "install:end", "verify", "verify:end", "commit"]


def _wait_for_lock_free(env: Path, timeout: float = 120) -> None:
    import fcntl

    fd = os.open(env / ".envdoctor" / "lock", os.O_RDONLY)
    deadline = time.time() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except OSError:
                assert time.time() < deadline, "the orphaned pip never released the lock"
                time.sleep(0.05)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", CRASH_POINTS)
def test_kill_9_at_each_step_then_recover_restores(templates, wheels, tmp_path, where):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes", extra_env={"ENVDOCTOR_FIX_CRASH_AT": where})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    j = journals(env)[-1]
    assert j["state"] == "begun" and j["steps"][-1]["step"] == where.replace(":end", "").replace(":during", "")
    if where.endswith(":during"):  # pip, orphaned, runs to its end holding the lock: wait for it
        _wait_for_lock_free(env)
    # check reports it and changes nothing (not even the journal)
    half = tree_hash(site)
    check = run_cli("check", "--python", str(env), "--format", "json")
    data = json.loads(check.stdout)
    validate_report(data)
    ed601 = [f for f in data["findings"] if f["id"] == "ED601"]
    assert ed601 and ed601[0]["evidence"]["interrupted_at"].startswith(where.split(":")[0]), check.stderr
    assert check.returncode == 1
    assert tree_hash(site) == half and journals(env)[-1] == j
    rec = fix(env, "--recover")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert journals(env)[-1]["state"] in ("rolled_back", "aborted")
    assert_same_tree(site, h, listing)
    # and nothing is left to recover
    again = run_cli("check", "--python", str(env), "--format", "json")
    assert not [f for f in json.loads(again.stdout)["findings"] if f["id"] == "ED601"]
    assert "nothing to recover" in fix(env, "--recover").stdout


def test_commit_is_final_even_if_killed_right_after(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes", extra_env={"ENVDOCTOR_FIX_CRASH_AT": "commit:end"})
    assert proc.returncode == -signal.SIGKILL
    assert journals(env)[-1]["state"] == "committed"
    assert py(env, "import mmcv.ops").returncode == 0


def test_kill_9_during_rollback_is_finished_by_the_next_fix(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    proc = fix(env, *wheel_args(wheels), "--apply", "--yes",
               extra_env={"ENVDOCTOR_FIX_FAIL_AT": "verify", "ENVDOCTOR_FIX_CRASH_AT": "rollback"})
    assert proc.returncode == -signal.SIGKILL
    assert journals(env)[-1]["state"] == "rolling_back"
    dry = fix(env)  # a dry run recovers nothing: it says what --apply / --recover would do first
    assert dry.returncode == 0 and "Interrupted: fix" in dry.stdout and "fix --recover" in dry.stdout
    assert journals(env)[-1]["state"] == "rolling_back"
    nxt = fix(env, *wheel_args(wheels), "--apply", "--yes")  # states the recovery, does it, then fixes
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert nxt.stdout.index("recovering it first") < nxt.stdout.index("rolled back") < nxt.stdout.index("Plan")
    assert [j["state"] for j in journals(env)] == ["rolled_back", "committed"]
    assert fix(env, "--undo").returncode == 0
    assert_same_tree(site, h, listing)


def test_read_only_site_packages_fails_cleanly(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {site} {site} && "
                            f"mount -o remount,bind,ro {site} && touch {site}/x"], capture_output=True, text=True)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()[:200]}")
    from tests.conftest import ROOT
    import sys

    cmd = (f"mount --bind {site} {site} && mount -o remount,bind,ro {site} && "
           f"PYTHONPATH={ROOT} {sys.executable} -m envdoctor fix --python {env} --pin mmcv==2.2.0 "
           f"--index-url {wheels['index']} --apply --yes")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Read-only file system" in proc.stdout
    assert journals(env)[-1]["state"] in ("rolled_back", "aborted")
    assert_same_tree(site, h, listing)


def test_two_fixes_at_once_do_not_interleave(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    from tests.conftest import ROOT
    import sys

    penv = dict(os.environ, PYTHONPATH=str(ROOT), ENVDOCTOR_FIX_PAUSE_AT="backup=4")
    first = subprocess.Popen([sys.executable, "-m", "envdoctor", "fix", "--python", str(env), *wheel_args(wheels),
                              "--apply", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=penv)
    deadline = time.time() + 60
    while not any(s["step"] == "backup" for j in journals(env) for s in j["steps"]):
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    # a second run that will not wait long: clear message, exit 2, nothing touched
    busy = fix(env, *wheel_args(wheels), "--apply", "--yes", extra_env={"ENVDOCTOR_LOCK_TIMEOUT": "0.5"})
    assert busy.returncode == 2
    assert "another envdoctor fix is running on this environment" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) <= 2
    # one that waits: it plans from what the first one left, i.e. nothing to do
    second = fix(env, *wheel_args(wheels), "--apply", "--yes")
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, out1 + err1
    assert second.returncode == 0, second.stdout + second.stderr
    assert "waiting for another envdoctor fix" in second.stdout
    assert "nothing to fix" in second.stdout
    assert [j["state"] for j in journals(env)] == ["committed"]


def test_undo_refuses_when_the_environment_changed_since(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    assert fix(env, *wheel_args(wheels), "--apply", "--yes").returncode == 0
    added = site_packages(env) / "mmcv_fakedep" / "__init__.py"
    added.write_text("OK = 'edited by the user'\n")
    undo = fix(env, "--undo")
    assert undo.returncode == 1
    assert "changed after fix" in undo.stdout and "mmcv_fakedep/__init__.py" in undo.stdout
    assert added.read_text() == "OK = 'edited by the user'\n"


# --- compat, with a stand-in layer (the mechanics) and with the real one (end to end) -----------

STANDIN_HOOK = '''\
import importlib.abc, importlib.machinery, sys, types


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.get_compiling_cuda_version = lambda: "not available"
        module.__envdoctor_compat__ = True


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "mmcv._ext" or importlib.machinery.PathFinder.find_spec(name, path) is not None:
            return None
        return importlib.machinery.ModuleSpec(name, _Loader())


def install():
    sys.meta_path.insert(0, Finder())
'''


def test_compat_wheel_is_visible_to_pip_and_removable_by_it(templates, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h, listing = snapshot(site)
    src = tmp_path / "standin"
    (src / "_envdoctor_compat").mkdir(parents=True)
    (src / "_envdoctor_compat" / "__init__.py").write_text("")
    (src / "_envdoctor_compat" / "hook.py").write_text(STANDIN_HOOK)
    (src / "_envdoctor_compat.pth").write_text("import _envdoctor_compat.hook as h; h.install()\n")
    proc = fix(env, "--strategy", "compat", "--apply", "--yes", extra_env={"ENVDOCTOR_COMPAT_SOURCE": str(src)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[compat]" in proc.stdout and "Result: verified" in proc.stdout
    assert py(env, "from mmcv.ops import ModulatedDeformConv2dPack").returncode == 0
    shown = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "show", "envdoctor-compat"],
                           capture_output=True, text=True, env={**os.environ, **ISOLATED_PIP})
    assert shown.returncode == 0 and "Version: " in shown.stdout
    # pip alone removes it, and leaves nothing behind
    un = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "uninstall", "-y", "envdoctor-compat"],
                        capture_output=True, text=True, env={**os.environ, **ISOLATED_PIP})
    assert un.returncode == 0, un.stdout + un.stderr
    assert_same_tree(site, h, listing)


def _real_compat_or_skip():
    try:
        from envdoctor.compat import hook  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"envdoctor.compat.hook is not importable yet ({type(exc).__name__}: {exc}); this test turns "
                    "on once the compat layer is merged")


def test_e2e_mmcv_lite_compat_then_undo(tmp_path):
    """torch 2.13 + mmcv-lite 2.2.0 (real): the compat layer makes ModulatedDeformConv2dPack importable;
    --undo restores site-packages byte for byte."""
    _real_compat_or_skip()
    from tests.envs import clone_env

    env = clone_env("mmcv-lite", tmp_path / "mmcv-lite")
    site = site_packages(env)
    h, listing = snapshot(site)
    stmt = "from mmcv.ops import ModulatedDeformConv2dPack"
    assert py(env, stmt).returncode != 0
    proc = fix(env, "--apply", "--yes", "--strategy", "compat", "--format", "json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    # verified by a round forked from the before-probe's `import torch`, warmed with mmengine.model & co while
    # pip ran (nothing the warm-up loaded or looked for made it stale: torch.utils._cxx_pytree, found but
    # failing without optree, once did)
    assert data["fix"]["result"]["status"] == "verified" and data["load_probes"]["reused"] is True
    assert data["load_probes"]["warmed"] > 100  # mmengine.model, torch.distributed.optim, sympy ...
    ok = py(env, stmt + "; import torch; m = ModulatedDeformConv2dPack(2, 2, 3, padding=1); "
                        "print(tuple(m(torch.zeros(1, 2, 5, 5)).shape))")
    assert ok.returncode == 0, ok.stderr
    assert "(1, 2, 5, 5)" in ok.stdout
    undo = fix(env, "--undo")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert_same_tree(site, h, listing)
    assert py(env, stmt).returncode != 0


# --- usage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (("--strategy", "magic"), "--strategy magic"),
    (("--pin", "mmcv"), "--pin mmcv: write NAME==VERSION"),
    (("--format", "xml"), "--format xml"),
])
def test_bad_options_are_one_line_exit_2(templates, tmp_path, args, words):
    proc = run_cli("fix", "--python", str(templates["nops"]), *args)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_undo_with_no_fix_recorded_is_exit_2_and_creates_nothing(templates, tmp_path):
    env = clone(templates, "nops", tmp_path)
    proc = fix(env, "--undo")
    assert proc.returncode == 2 and "nothing to undo" in proc.stderr
    assert not (env / ".envdoctor").exists()


def test_apply_without_yes_off_a_terminal_changes_nothing(templates, wheels, tmp_path):
    env = clone(templates, "nops", tmp_path)
    site = site_packages(env)
    h = tree_hash(site)
    proc = fix(env, *wheel_args(wheels), "--apply")
    assert proc.returncode == 2 and "pass --yes" in proc.stderr
    assert tree_hash(site) == h
