"""Carry out a plan as one transaction: lock, journal, backup, act (real pip of the target),
probe again, and commit or roll back (envdoctor.fix.recover: only what the transaction wrote).
Finishing interrupted transactions and `--undo` live in envdoctor.fix.undo; what the plan touches in
fix/footprint.py, preparing its wheels in fix/prepare.py, reading the verification in fix/verify.py.

Journal steps, in order (each recorded `begin` before and `end` after it runs):
  prepare            download the wheels (binary only, no cache), build the compat wheel, or (build
                     strategy) take mmcv's wheel from envdoctor's cache / build it outside the target;
                     resolve missing requirements; nothing in the environment changes yet
  manifest           list every entry under site-packages and the scripts directory
  backup             hard-link/copy every file the plan may replace or remove
  uninstall:<dist>   `pip uninstall -y <dist>` for each conflicting distribution
  install[-N]        `pip install --no-index --no-deps --force-reinstall <the prepared wheels>`; the compat
                     wheel, where none of its files is there yet, written by envdoctor (fix/own_wheel.py)
  verify             one fresh probe of the target (the one check runs), the plan's import statements
                     run inside it (fix/verify.py reads what it found)
  commit             the after-manifest is saved; the journal says "committed"
On failure: `rollback` (delete what is new, put the backup back, compare with the manifest).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Optional

from envdoctor.facts import LoadResult, Report
from envdoctor.fix import backup as bk
from envdoctor.fix import own_wheel, owned
from envdoctor.fix import recover as rc
from envdoctor.fix.footprint import dist_paths, roots_for
from envdoctor.fix.journal import Journal
from envdoctor.fix.lock import EnvLock
from envdoctor.fix.pip_runner import Pip
from envdoctor.fix.plan import Plan
from envdoctor.fix.prepare import prepare, touched_paths, written_tops
from envdoctor.fix.result import FixFailed, FixResult
from envdoctor.fix.undo import prune_committed
from envdoctor.fix.verify import statements, verify
from envdoctor.fix.wheels import wheel_metadata, wheel_targets
from envdoctor.probe import TargetInfo

Echo = Callable[[str], None]
VerifyProbe = Callable[[list[str]], "tuple[Report, dict[str, LoadResult]]"]
# the verification's warm-up (probe.Holder.warm): the statements, and the paths the install writes or removes
Warm = Callable[[list[str], list[str]], object]


def _quiet(_: str) -> None:
    pass


def _record_written(j: Journal, before: bk.Manifest, roots: bk.Roots,
                    now: Optional[bk.Manifest] = None) -> bk.Manifest:
    """How the transaction left every path it changed so far: a recovery undoes only these, and only while
    they still look like this. Returns the manifest scanned for it (the commit's manifest-after); `now`:
    that manifest, where the step knows every path it wrote (no scan)."""
    if now is None:
        now = bk.scan(roots)
    j.save_json(owned.WRITTEN, owned.snapshot(before, roots, now))
    return now


def _with_written(base: bk.Manifest, paths: list[str], root: str) -> bk.Manifest:
    """`base` with the paths a step wrote, and the directories it made for them, as they are now."""
    now = dict(base)
    for path in paths:
        d = os.path.dirname(path)
        while d.startswith(os.path.join(root, "")) and d not in now:
            _put(now, d)
            d = os.path.dirname(d)
        _put(now, path)
    return now


def _put(manifest: bk.Manifest, path: str) -> None:
    entry = bk.entry_of(path)
    if entry is not None:
        manifest[path] = entry


class Interrupted(KeyboardInterrupt):
    """SIGTERM during a fix: handled like Ctrl-C (roll back, then exit)."""


def _install_root(wheel: Path, info: TargetInfo) -> str:
    purelib = wheel_metadata(wheel)["purelib"]
    return os.path.normpath(info.paths["purelib" if purelib else "platlib"])


def _rollback_words(done: dict[str, Any]) -> str:
    st = done["status"]
    if st in ("rolled_back", "aborted"):
        return "rolled back: the environment is as before this fix" + (
            f" (left alone, not this fix's: {', '.join(done['assessment']['yours'][:8])})"
            if done["assessment"]["yours"] else "")
    return f"the rollback could not finish ({st}); run `envdoctor fix --recover` to see why and finish it"


def apply_plan(plan: Plan, report: Report, info: TargetInfo, lock: EnvLock, *, allow_torch: bool,
               probe: VerifyProbe, timeout: float, echo: Echo = _quiet, warm: Optional[Warm] = None
               ) -> tuple[FixResult, Optional[Report]]:
    """Run the plan's actions as one transaction. The caller holds `lock`. `probe(statements)` is the
    verification: one fresh pass of the pipeline that also runs the statements (the after-report and how
    each statement went). `warm(statements, avoid)`, once the wheels are known: the verification may import
    the statements' other packages while the install runs (never from `avoid`)."""
    state = lock.state
    user = any(a.user_site for a in plan.runnable)
    roots = roots_for(info, state, user)
    if user and info.user.get("paths"):  # what pip --user writes: the user scheme's directories
        info = dataclasses.replace(info, paths={**info.paths, **info.user["paths"]})
    j = Journal.create(state, "fix", python=info.python, prefix=info.prefix, plan=plan.to_dict(),
                       roots=roots.to_dict())
    pip = Pip(info.python, log_dir=j.path("logs"), keep_fds=(lock.fd,) if lock.fd is not None else (),
              on_start=lock.record_child, user=user)
    result = FixResult(status="verified", txn=j.id)
    after: Optional[Report] = None
    before: bk.Manifest = {}
    written: Optional[bk.Manifest] = None  # the manifest of the last step's record of what it wrote
    dirty = False  # a pip step began after the last record of what the transaction wrote
    try:
        j.step("prepare")
        prepared = prepare(plan, pip, info, report, j.path("wheels"), allow_torch, echo)
        to_back, roots = touched_paths(prepared, report, info, roots)
        j.set(roots=roots.to_dict())
        j.step("prepare", "end", wheels=[w.name for p in prepared for w in p.wheels])
        if warm is not None:  # to_back already holds every path of the distributions pip removes or replaces
            warm(statements(plan), sorted(set(to_back) | set(written_tops(prepared, info, roots))))

        j.step("manifest")
        before = bk.scan(roots)
        j.save_json("manifest-before.json", before)
        j.step("manifest", "end", entries=len(before))

        j.step("backup")
        echo(f"  backing up {len(to_back)} top-level paths that may be replaced or removed")
        backup = bk.Backup(j.path("backup"))
        for path in to_back:
            backup.add(path)
        j.save_json(bk.Backup.INDEX, backup.index)
        j.step("backup", "end", entries=len(backup.index))

        for i, p in enumerate(prepared):
            for dist in p.action.remove:
                tops, outside = dist_paths(dist, roots)
                j.save_json(f"intent-uninstall-{dist}.json", {"kind": "uninstall", "tops": tops + outside})
                dirty = True
                j.step(f"uninstall:{dist}", intent=f"intent-uninstall-{dist}.json")
                echo(f"  pip uninstall -y {dist}")
                res = pip.run("uninstall", "-y", dist, name=f"uninstall:{dist}", isolated=True)
                if not res.ok:
                    raise FixFailed(f"pip uninstall {dist} failed:\n{res.tail()}")
                written = _record_written(j, before, roots)
                dirty = False
                j.step(f"uninstall:{dist}", "end")
            name = "install" if i == 0 else f"install-{i + 1}"
            j.save_json(f"intent-{name}.json", {"kind": "install", "wheels": [
                owned.wheel_intent(w, _install_root(w, info), info.paths.get("scripts", ""), info.windows)
                for w in p.wheels]})
            dirty = True
            j.step(name, intent=f"intent-{name}.json")
            targets = [str(t) for w in p.wheels for t in wheel_targets(w, info.paths, info.windows)]
            watch = [t for t in targets if not os.path.lexists(t)]
            now: Optional[bk.Manifest] = None
            # envdoctor writes only where nothing of it is there yet, and never where pip would refuse (PEP 668)
            own = p.action.installer == "envdoctor" and not info.externally_managed and not any(
                os.path.lexists(t) for w in p.wheels for t in own_wheel.targets(w, _install_root(w, info)))
            if own:
                # what it wrote is known path by path: the record needs no scan, and takes nothing else for ours
                now = written if written is not None else before
                for w in p.wheels:
                    echo(f"  installing {w.name} (envdoctor writes its files and RECORD itself, as pip would)")
                    root = _install_root(w, info)
                    paths = own_wheel.install(w, root, info.bytecode, step=name,
                                              compile_in_target=functools.partial(pip.compile, name=f"{name}-compile"))
                    now = _with_written(now, paths, root)
            elif p.action.installer == "envdoctor" and info.pip is None:
                raise FixFailed("the target has no pip, and envdoctor writes the compat layer itself only into an "
                                "environment that is not externally managed (PEP 668) and holds none of its files ("
                                + ", ".join(t for t in targets if t not in watch)[:300] + ")")
            else:
                echo(f"  pip install {' '.join(w.name for w in p.wheels)}")
                res = pip.run("install", "--no-index", "--no-deps", "--no-cache-dir",
                              "--user" if user else "--no-user", "--force-reinstall",
                              *[str(w) for w in p.wheels], name=name, watch=watch, isolated=True)
                if not res.ok:
                    raise FixFailed(f"pip install failed:\n{res.tail()}")
            written = _record_written(j, before, roots, now)
            dirty = False
            j.step(name, "end")

        j.step("verify")
        echo("  verifying: probing the environment again")
        after, verified = probe(statements(plan))
        failures = verify(plan, after, verified, info.python, timeout, echo)
        if failures:
            j.step("verify", "end", failures=failures)
            result.failures = failures
            raise FixFailed("the fresh probe does not confirm the fix:\n  " + "\n  ".join(failures))
        j.step("verify", "end")

        j.step("commit")
        # the manifest the last step recorded, not a new scan (~30,000 entries with torch): what the
        # verification probe or the user wrote since is not this transaction's, so undo neither removes
        # it nor takes it for its own (it reports it as a change made after the fix)
        post = written if written is not None else bk.scan(roots)
        j.save_json("manifest-after.json", post)
        added, removed, changed = bk.diff(before, post)
        result.changes = {"added": len(added), "removed": len(removed), "changed": len(changed)}
        j.set(state="committed", changes=result.changes, undo_available=True)
        j.step("commit", "end")
        rc.cleanup(j, keep_backup=True)
        prune_committed(state)
        result.message = "fix applied and verified"
    except KeyboardInterrupt:
        if j.state == "committed":  # verified and recorded: an interrupt while tidying up changes nothing
            raise
        # Ctrl-C / SIGTERM: undo before exiting. A second Ctrl-C interrupts the rollback itself; the
        # journal then says so and `envdoctor fix --recover` finishes it.
        echo("envdoctor: interrupted: rolling back what this fix changed (Ctrl-C again leaves that to "
             "`envdoctor fix --recover`)")
        j.set(error="interrupted")
        if dirty:  # pip was stopped: nothing but this transaction wrote since, so record what is there
            _record_written(j, before, roots)
        done = rc.rollback(j, echo)
        echo(f"envdoctor: {_rollback_words(done)}")
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends in a rollback, then is reported
        if j.state == "committed":
            raise
        result.message = str(exc) if isinstance(exc, FixFailed) else f"{type(exc).__name__}: {exc}"
        j.set(error=result.message)
        if dirty:
            _record_written(j, before, roots)
        done = rc.rollback(j, echo)
        result.status = {"conflict": "rollback_incomplete", "blocked": "rollback_incomplete"}.get(
            done["status"], done["status"])
        result.problems = done.get("problems") or done["assessment"]["blocked"] or done["assessment"]["conflicts"]
    result.pip = [{"command": " ".join(c.argv[1:]), "exit": c.returncode, "seconds": c.seconds, "log": c.log}
                  for c in pip.calls]
    return result, after
