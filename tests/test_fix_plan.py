"""The planner (pure: facts + findings + tables -> actions) and the file-level machinery under it
(manifest, backup, rollback, undo, journal, lock, wheel builder), on real files, without pip."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envdoctor.facts import Component, Finding, Fix, LoadError, LoadResult, Package, PythonEnv, Report
from envdoctor.fix_choice import ConsumerRange, FixChoice, PipInstall
from envdoctor.fix import backup as bk
from envdoctor.fix.journal import Journal
from envdoctor.fix.lock import EnvLock, state_dir
from envdoctor.fix.plan import PlanOptions, make_plan
from envdoctor.fix.wheels import build_wheel, wheel_metadata, wheel_targets
from envdoctor.rules import load_tables
from tests.diagnosed import diagnosed
from tests.wheelfactory import tree_hash

PY = "/envs/x/bin/python"


def report(dists: dict[str, str], comps: dict[str, tuple[bool, str, str]], findings=(), os_name="Linux",
           python="3.11.7") -> Report:
    """dists: name -> version; comps: component -> (installed, load status, error message)."""
    r = Report(python=PythonEnv(executable=PY, version=python, prefix="/envs/x"),
               packages={n: Package(name=n, version=v) for n, v in dists.items()}, findings=tuple(findings))
    r.host.os = os_name
    r.packages.setdefault("pip", Package(name="pip", version="23.2.1"))
    for name, (inst, status, msg) in comps.items():
        c = Component(name=name, installed=inst, version=dists.get(name.split(".")[0].replace("mmcv", "mmcv")))
        c.load = LoadResult(status=status, error=LoadError(type="ImportError", message=msg) if msg else None)
        r.components[name] = c
    if "torch" in comps:
        r.components["torch"].version = "2.13.0+cpu"
        r.components["torch"].facts = {"version_py": {"__version__": "2.13.0+cpu", "cuda": None}}
    return r


def by_id(r: Report) -> dict[str, Finding]:
    return {f.id: f for f in r.findings}


LITE = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu"},
              {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""),
               "mmcv._ext": (False, "missing", "No module named 'mmcv._ext'")})


def test_healthy_environment_has_nothing_to_do():
    r = report({"mmcv": "2.2.0", "torch": "2.13.0+cpu"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (True, "ok", "")})
    plan = make_plan(r, load_tables(), PlanOptions())
    assert not plan.problems and not plan.actions


def test_pinned_wheel_removes_every_mmcv_flavour_first_binary_only_no_cache(tmp_path):
    r = report({"mmcv-lite": "2.2.0", "mmcv": "1.7.2", "torch": "2.13.0+cpu"}, {
        "torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "No module")})
    plan = make_plan(r, load_tables(), PlanOptions(pins={"mmcv": "2.2.0"}, index_url=str(tmp_path)))
    [a] = plan.actions
    assert a.kind == "wheel" and a.applies
    assert a.remove == ["mmcv", "mmcv-lite"] and a.install == ["mmcv==2.2.0"]
    assert a.sources == ["--no-index", "--find-links", str(tmp_path)]
    assert a.commands[0] == f"{PY} -m pip uninstall -y mmcv"
    assert "--no-cache-dir --only-binary=:all:" in a.commands[-1]
    assert a.verify.components_ok == ["mmcv", "mmcv._ext"] and "mmcv-lite" in a.verify.absent
    assert "installed over each other" in plan.problems[0].message


def test_the_plan_carries_out_the_findings_choice_and_asks_the_tables_nothing():
    # a choice the shipped tables would never make (no mmcv wheel exists for torch 2.13): the plan installs exactly
    # it, so what `fix` does cannot drift from what `check` printed
    choice = FixChoice(strategy="wheel", component="mmcv", python=PY, os="linux", remove=("mmcv-lite",),
                       installs=(PipInstall(("mmcv==2.1.0",), ("--find-links",
                                                               "https://example.invalid/torch2.1.0/index.html")),),
                       reason="row X", satisfies=(ConsumerRange("mmdet", "3.3.0", ">=2.0.0rc4,<2.2.0"),))
    finding = Finding("ED401", "mmcv-without-ops", "error", "mmcv", "no ops",
                      fixes=[Fix("install it", choice.commands(), "wheel", choice)])
    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu", "mmdet": "3.3.0"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "x")},
               findings=[finding])
    plan = make_plan(r, load_tables(), PlanOptions())
    [a] = plan.actions
    assert a.choice == choice and a.commands == choice.commands() == finding.fixes[0].commands
    assert a.install == ["mmcv==2.1.0"] and a.sources == ["--find-links", "https://example.invalid/torch2.1.0/index.html"]
    assert a.remove == ["mmcv-lite"] and a.why == "row X"
    # without the finding (a report `check` never saw) there is no wheel to carry out: the compat layer
    r = dataclasses.replace(r, findings=())
    assert [a.kind for a in make_plan(r, load_tables(), PlanOptions()).actions] == ["compat"]


def test_no_wheel_for_torch_2_13_falls_back_to_compat_with_the_real_tables():
    plan = make_plan(LITE, load_tables(), PlanOptions())
    [a] = plan.actions
    assert a.kind == "compat" and a.remove == [] and "envdoctor-compat" in a.verify.present
    assert a.verify.imports == ["from mmcv.ops import ModulatedDeformConv2dPack"]
    assert any("no official prebuilt mmcv wheel" in n for n in plan.notes)
    assert "pip uninstall -y envdoctor-compat" in a.undo


def test_wheel_strategy_without_a_wheel_applies_nothing():
    plan = make_plan(LITE, load_tables(), PlanOptions(strategy="wheel"))
    assert plan.problems and not plan.runnable


def test_compat_unavailable_is_said():
    plan = make_plan(LITE, load_tables(), PlanOptions(strategy="compat", compat_unavailable="no layer here"))
    assert not plan.actions and "compat: no layer here" in plan.notes


TORCH_CHOICE = FixChoice(strategy="torch", component="mmcv", python=PY, os="linux", remove=("mmcv-lite",),
                         installs=(PipInstall(("torch==2.4.1", "torchvision==0.19.1"),
                                              ("--index-url", "https://download.pytorch.org/whl/cpu")),
                                   PipInstall(("mmcv==2.2.0",),
                                              ("--find-links", "https://example.invalid/cpu/torch2.4.0/index.html"))),
                         reason="torch 2.4.1 has an mmcv wheel")
TORCH_FIX = Finding(id="ED405", name="no-wheel", severity="warning", component="mmcv", title="no wheel",
                    fixes=[Fix("change torch", TORCH_CHOICE.commands(), "torch", choice=TORCH_CHOICE),
                           # the same change for a new environment: one set of actions
                           Fix("same, new environment", [], "torch", choice=dataclasses.replace(
                               TORCH_CHOICE, python="python", remove=(), new_environment=True))])


@pytest.mark.parametrize("allow", [False, True])
def test_torch_changes_are_printed_and_applied_only_with_the_flag(allow):
    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "x")},
               findings=[TORCH_FIX])
    plan = make_plan(r, load_tables(), PlanOptions(strategy="wheel", allow_torch_change=allow))
    assert [a.kind for a in plan.actions] == ["torch", "torch"]  # the duplicate choice is dropped
    first, second = plan.actions
    assert first.install == ["torch==2.4.1", "torchvision==0.19.1"] and first.remove == ["mmcv-lite"]
    assert first.sources == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    assert second.install == ["mmcv==2.2.0"] and second.remove == []
    assert second.sources == ["--find-links", "https://example.invalid/cpu/torch2.4.0/index.html"]
    assert [line for a in plan.actions for line in a.commands] == TORCH_CHOICE.commands()
    assert all(a.applies is allow and a.choice == TORCH_CHOICE for a in plan.actions)
    if not allow:
        assert "--allow-torch-change" in first.not_applied_because


def test_torch_change_honours_the_users_index_url():
    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "x")},
               findings=[TORCH_FIX])
    plan = make_plan(r, load_tables(), PlanOptions(strategy="wheel", index_url="https://mirror.invalid/simple"))
    assert [a.sources for a in plan.actions] == [["--index-url", "https://mirror.invalid/simple"]] * 2
    assert "--index-url https://mirror.invalid/simple" in plan.actions[0].commands[-1]


def test_a_torch_fix_without_a_choice_is_left_to_the_user():
    """Only a report of an older envdoctor has one: no action, a note naming its command; nothing is parsed."""
    old = Finding(id="ED405", name="no-wheel", severity="warning", component="mmcv", title="no wheel",
                  fixes=[Fix("change torch", [f"{PY} -m pip install torch==2.4.1 --index-url "
                                              "https://download.pytorch.org/whl/cpu"], "torch")])
    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "x")},
               findings=[old])
    plan = make_plan(r, load_tables(), PlanOptions(strategy="wheel", allow_torch_change=True))
    assert not [a for a in plan.actions if a.kind == "torch"] and not plan.runnable
    assert any("run it yourself" in n and "torch==2.4.1" in n for n in plan.notes), plan.notes


def test_torchvision_that_does_not_pair_gets_the_tables_choice():
    r = report({"torch": "2.13.0+cpu", "torchvision": "0.29.1"},
               {"torch": (True, "ok", ""), "torchvision": (True, "import_error", "operator torchvision::nms does "
                                                                               "not exist"),
                "torchvision.ops": (True, "skipped", "")})
    tables = load_tables()
    r = diagnosed(r, tables)
    plan = make_plan(r, tables, PlanOptions())
    [a] = plan.actions
    assert a.component == "torchvision" and a.install == ["torchvision==0.28.0"]
    assert a.sources == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    assert a.choice == by_id(r)["ED301"].fixes[0].choice and a.choice.installs[0].replace
    assert a.commands == by_id(r)["ED301"].fixes[0].commands


def test_no_pip_in_the_target_means_nothing_is_applied():
    r = report({"mmcv-lite": "2.2.0", "torch": "2.13.0+cpu"},
               {"torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "x")})
    del r.packages["pip"]
    plan = make_plan(r, load_tables(), PlanOptions(pins={"mmcv": "2.2.0"}))
    assert plan.actions and not plan.runnable and "ensurepip" in plan.actions[0].not_applied_because


def test_plan_round_trips_through_the_journal():
    from envdoctor.fix.plan import Plan

    plan = make_plan(LITE, load_tables(), PlanOptions())
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


# --- backup / rollback / undo on real files --------------------------------------------------------


def _tree(root: Path) -> None:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("A = 1\n")
    (root / "pkg" / "sub" / "m.py").write_text("B = 2\n")
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "pkg" / "run.sh", 0o755)
    (root / "pkg" / "link").symlink_to("sub/m.py")
    (root / "top.py").write_text("C = 3\n")


def _txn(tmp_path: Path, site: Path, legacy: bool = False) -> tuple[Journal, bk.Manifest, bk.Backup]:
    """A transaction over `site` as apply_plan records it: roots, before-manifest, backup, a pip step begun
    (with its intent, unless `legacy`: as an envdoctor from before those records left it)."""
    roots = bk.Roots((str(site),))
    j = Journal.create(tmp_path / "state", "fix", roots=roots.to_dict(), python="py")
    before = bk.scan(roots)
    j.save_json("manifest-before.json", before)
    b = bk.Backup(j.path("backup"))
    b.add(str(site / "pkg"))
    b.add(str(site / "top.py"))
    j.save_json("backup.json", b.index)
    if legacy:
        j.step("install")
    else:
        j.save_json("intent-install.json", {"kind": "install", "wheels": []})
        j.step("install", intent="intent-install.json")
    return j, before, b


def _pip_like_changes(site: Path) -> None:
    """What pip might do: replace, delete, add files and dirs, change modes."""
    import shutil

    (site / "pkg" / "__init__.py").unlink()
    (site / "pkg" / "__init__.py").write_text("A = 'new'\n")
    shutil.rmtree(site / "pkg" / "sub")
    (site / "pkg" / "new").mkdir()
    (site / "pkg" / "new" / "x.py").write_text("")
    (site / "added.pth").write_text("import x\n")
    os.chmod(site / "pkg" / "run.sh", 0o644)
    (site / "top.py").unlink()


def test_rollback_undoes_adds_deletes_edits_and_mode_changes_it_recorded(tmp_path):
    from envdoctor.fix import owned, recover

    site = tmp_path / "site"
    _tree(site)
    h = tree_hash(site)
    j, before, _ = _txn(tmp_path, site)
    _pip_like_changes(site)
    j.save_json(owned.WRITTEN, owned.snapshot(before, bk.Roots((str(site),))))
    assert tree_hash(site) != h
    done = recover.rollback(j)
    assert done["status"] == "rolled_back", done
    assert tree_hash(site) == h
    assert recover.assess(j).work == 0  # idempotent: nothing left to do


def test_the_file_pip_was_writing_when_killed_is_the_transactions(tmp_path):
    """pip copies each file of a wheel in place and dies with envdoctor: a kill -9 during the install can
    leave the file it was copying short, even empty (seen in CI: kill -9 at install:during). That file is
    the transaction's while its bytes are a proper prefix of the wheel's; other bytes are the user's."""
    from envdoctor.fix import owned, recover
    from tests.wheelfactory import fakedep_wheel

    site = tmp_path / "site"
    _tree(site)
    whl = fakedep_wheel(tmp_path / "wheels")
    j, before, _ = _txn(tmp_path, site)
    j.save_json("intent-install.json", {"kind": "install", "wheels": [
        owned.wheel_intent(whl, str(site), str(tmp_path / "bin"))]})
    with zipfile.ZipFile(whl) as zf:
        first, second = sorted(n for n in zf.namelist() if n.startswith("mmcv_fakedep/part_"))[:2]
        data = {n: zf.read(n) for n in (first, second)}
    (site / "mmcv_fakedep").mkdir()
    (site / first).write_bytes(data[first])  # copied whole
    cut = site / second
    for short in (b"", data[second][:5]):  # created, not written yet; written half-way
        cut.write_bytes(short)
        a = recover.assess(j)
        assert not a.conflicts and {str(site / first), str(cut)} <= set(a.delete), a
    cut.write_bytes(b"PART = 99\n")  # as long, other bytes: not what pip was copying
    assert recover.assess(j).conflicts == [str(cut)]
    # only the last file present (in the wheel's order) can be the one pip was copying: an earlier one cut
    # short was emptied or truncated by someone else (review finding)
    cut.write_bytes(data[second])
    (site / first).write_bytes(data[first][:3])
    assert recover.assess(j).conflicts == [str(site / first)]
    (site / first).write_bytes(data[first])
    cut.write_bytes(data[second][:5])
    intent = j.load_json("intent-install.json")
    del intent["wheels"][0]["wheel"]  # an intent from before the wheel's path was recorded
    j.save_json("intent-install.json", intent)
    assert recover.assess(j).conflicts == [str(cut)]
    cut.write_bytes(data[second][:5])
    done = recover.rollback(j, on_conflict="restore")
    assert done["status"] == "rolled_back" and not (site / "mmcv_fakedep").exists()


def test_rollback_leaves_what_appeared_or_changed_after_the_transaction(tmp_path):
    from envdoctor.fix import owned, recover

    site = tmp_path / "site"
    _tree(site)
    j, before, _ = _txn(tmp_path, site)
    _pip_like_changes(site)
    j.save_json(owned.WRITTEN, owned.snapshot(before, bk.Roots((str(site),))))
    # afterwards, the user's own work: a new package, one inside a directory the transaction created,
    # and an edit of a file the transaction never touched
    (site / "six.py").write_text("# the user's\n")
    (site / "pkg" / "new" / "mine.py").write_text("# the user's too\n")
    (site / "pkg" / "link").unlink()
    (site / "pkg" / "link").symlink_to("run.sh")
    a = recover.assess(j)
    assert {"six.py", "pkg"} <= set(a.yours) and not a.conflicts
    assert recover.rollback(j)["status"] == "rolled_back"
    assert (site / "six.py").read_text() == "# the user's\n"
    assert (site / "pkg" / "new" / "mine.py").exists() and not (site / "pkg" / "new" / "x.py").exists()
    assert os.readlink(site / "pkg" / "link") == "run.sh"
    assert not (site / "added.pth").exists() and (site / "top.py").read_text() == "C = 3\n"
    assert (site / "pkg" / "sub" / "m.py").read_text() == "B = 2\n"
    assert os.stat(site / "pkg" / "run.sh").st_mode & 0o777 == 0o755


def test_a_conflict_changes_nothing_until_the_user_chooses(tmp_path):
    from envdoctor.fix import owned, recover

    site = tmp_path / "site"
    _tree(site)
    h = tree_hash(site)
    j, before, _ = _txn(tmp_path, site)
    _pip_like_changes(site)
    j.save_json(owned.WRITTEN, owned.snapshot(before, bk.Roots((str(site),))))
    (site / "pkg" / "__init__.py").write_text("A = 'edited by the user after the fix'\n")
    half = tree_hash(site)
    done = recover.rollback(j)
    assert done["status"] == "conflict" and done["assessment"]["conflicts"] == [str(site / "pkg" / "__init__.py")]
    assert tree_hash(site) == half and not j.terminal
    assert recover.rollback(j, on_conflict="restore")["status"] == "rolled_back"
    assert tree_hash(site) == h


def test_a_journal_without_records_of_its_writes_touches_nothing_unasked(tmp_path):
    """Left by an envdoctor that did not record what it wrote: every change since is a conflict."""
    from envdoctor.fix import recover

    site = tmp_path / "site"
    _tree(site)
    h = tree_hash(site)
    j, _, _ = _txn(tmp_path, site, legacy=True)  # an install begun, no written.json, no intent
    _pip_like_changes(site)
    half = tree_hash(site)
    done = recover.rollback(j)
    assert done["status"] == "conflict" and str(site / "added.pth") in done["assessment"]["conflicts"]
    assert tree_hash(site) == half
    assert recover.rollback(j, on_conflict="restore")["status"] == "rolled_back"
    assert tree_hash(site) == h


def test_rollback_reports_what_it_could_not_restore(tmp_path):
    from envdoctor.fix import owned, recover

    site = tmp_path / "site"
    _tree(site)
    roots = bk.Roots((str(site),))
    j = Journal.create(tmp_path / "state", "fix", roots=roots.to_dict(), python="py")
    before = bk.scan(roots)
    j.save_json("manifest-before.json", before)
    j.step("install", intent="intent-install.json")
    (site / "top.py").write_text("changed, and never backed up\n")
    j.save_json(owned.WRITTEN, owned.snapshot(before, roots))
    done = recover.rollback(j)
    assert done["status"] == "rollback_incomplete"
    assert done["problems"] == [f"{site / 'top.py'}: not in the backup, cannot be restored"]
    assert j.state == "rollback_incomplete"


def test_undo_removes_only_what_the_fix_added_and_refuses_after_drift(tmp_path):
    site = tmp_path / "site"
    _tree(site)
    h = tree_hash(site)
    roots = bk.Roots((str(site),))
    before = bk.scan(roots)
    b = bk.Backup(tmp_path / "backup")
    b.add(str(site / "pkg"))
    (site / "pkg" / "__init__.py").unlink()
    (site / "pkg" / "__init__.py").write_text("fixed\n")
    (site / "newpkg").mkdir()
    (site / "newpkg" / "a.py").write_text("")
    after = bk.scan(roots)
    assert bk.drift(before, after, b) == []
    (site / "users_own.py").write_text("# installed later by the user\n")  # not ours: kept
    (site / "newpkg" / "__pycache__").mkdir()  # byte-code Python wrote later inside a dir we created
    (site / "newpkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    assert bk.undo_to(before, after, roots, b) == []
    (site / "users_own.py").unlink()
    assert tree_hash(site) == h
    # drift: a file the fix added was edited since
    b2 = bk.Backup(tmp_path / "backup2")
    b2.add(str(site / "pkg"))
    (site / "newpkg").mkdir()
    (site / "newpkg" / "a.py").write_text("")
    after2 = bk.scan(roots)
    (site / "newpkg" / "a.py").write_text("edited by the user")
    assert bk.drift(before, after2, b2) == [str(site / "newpkg" / "a.py")]
    # drift: the user's own file inside a directory the fix created (undo would remove it with the directory;
    # review finding), while byte-code Python wrote there for the fix's module is not
    (site / "newpkg" / "a.py").write_text("")
    after3 = bk.scan(roots)
    (site / "newpkg" / "__pycache__").mkdir()
    (site / "newpkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    assert bk.drift(before, after3, b2) == []
    (site / "newpkg" / "my_notes.py").write_text("# the user's\n")
    (site / "newpkg" / "sub").mkdir()
    assert bk.drift(before, after3, b2) == [str(site / "newpkg" / "my_notes.py"), str(site / "newpkg" / "sub")]


def test_backups_are_hard_links_where_possible(tmp_path):
    site = tmp_path / "site"
    _tree(site)
    b = bk.Backup(tmp_path / "backup")
    b.add(str(site / "top.py"))
    assert os.stat(b.stored(str(site / "top.py"))).st_ino == os.stat(site / "top.py").st_ino


# --- journal and lock -----------------------------------------------------------------------------


def test_journal_records_begin_and_end_durably(tmp_path):
    j = Journal.create(tmp_path, "fix", python="p")
    j.step("backup")
    j.step("backup", "end", entries=3)
    again = Journal.load(j.dir)
    assert [(s["step"], s["phase"]) for s in again.data["steps"]] == [("backup", "begin"), ("backup", "end")]
    assert not again.terminal and again.ended("backup") and not again.ended("install")
    j.set(state="committed")
    assert Journal.all(tmp_path)[0].terminal


def test_fault_injection_raises_where_asked(tmp_path, monkeypatch):
    from envdoctor.fix.journal import InjectedFault

    monkeypatch.setenv("ENVDOCTOR_FIX_FAIL_AT", "install:end")
    j = Journal.create(tmp_path, "fix")
    j.step("install")
    with pytest.raises(InjectedFault):
        j.step("install", "end")
    assert j.data["steps"][-1]["phase"] == "end"  # recorded before the fault


def test_lock_excludes_another_process(tmp_path):
    lock = EnvLock(tmp_path)
    assert lock.acquire(0)
    code = ("import sys; from pathlib import Path; from envdoctor.fix.lock import EnvLock; "
            "l = EnvLock(Path(sys.argv[1])); print(l.acquire(0.3), l.holder())")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert other.stdout.split()[0] == "False" and f"pid {os.getpid()}" in other.stdout
    lock.release()
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert other.stdout.split()[0] == "True"


def test_state_lives_in_a_venv_or_else_in_the_cache(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("")
    assert state_dir(venv) == venv / ".envdoctor"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    system = state_dir("/usr")
    assert str(system).startswith(str(tmp_path / "cache" / "envdoctor" / "envs"))


# --- the wheel builder --------------------------------------------------------------------------------


def test_built_wheel_has_a_valid_record_and_maps_to_the_right_paths(tmp_path):
    src = tmp_path / "src"
    (src / "_envdoctor_compat").mkdir(parents=True)
    (src / "_envdoctor_compat" / "hook.py").write_text("X = 1\n")
    (src / "_envdoctor_compat" / "__pycache__").mkdir()
    (src / "_envdoctor_compat" / "__pycache__" / "hook.cpython-311.pyc").write_bytes(b"junk")
    (src / "_envdoctor_compat.pth").write_text("import _envdoctor_compat.hook\n")
    whl = build_wheel(src, "envdoctor-compat", "0.1.0", tmp_path / "out")
    assert whl.name == "envdoctor_compat-0.1.0-py3-none-any.whl"
    assert build_wheel(src, "envdoctor-compat", "0.1.0", tmp_path / "out2").read_bytes() == whl.read_bytes()
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        record = zf.read("envdoctor_compat-0.1.0.dist-info/RECORD").decode()
    assert not any("__pycache__" in n for n in names)
    from envdoctor.fix.wheels import record_hash

    assert f"_envdoctor_compat/hook.py,{record_hash(b'X = 1' + bytes([10]))},6" in record
    meta = wheel_metadata(whl)
    assert meta["name"] == "envdoctor-compat" and meta["purelib"] is True
    targets = wheel_targets(whl, {"purelib": "/s", "platlib": "/p", "scripts": "/b", "data": "/d"})
    assert Path("/s/_envdoctor_compat.pth") in targets and Path("/s/_envdoctor_compat/hook.py") in targets
