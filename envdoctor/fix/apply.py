"""Carry out a plan as one transaction: lock, journal, backup, act (real pip of the target),
probe again, and commit or roll back (envdoctor.fix.recover: only what the transaction wrote).
Finishing interrupted transactions and `--undo` live in envdoctor.fix.undo.

Journal steps, in order (each recorded `begin` before and `end` after it runs):
  prepare            download the wheels (binary only, no cache), build the compat wheel, or (build
                     strategy) take mmcv's wheel from envdoctor's cache / build it outside the target;
                     resolve missing requirements; nothing in the environment changes yet
  manifest           list every entry under site-packages and the scripts directory
  backup             hard-link/copy every file the plan may replace or remove
  uninstall:<dist>   `pip uninstall -y <dist>` for each conflicting distribution
  install[-N]        `pip install --no-index --no-deps --force-reinstall <the prepared wheels>`
  verify             a fresh probe of the target + the plan's import statements
  commit             the after-manifest is saved; the journal says "committed"
On failure: `rollback` (delete what is new, put the backup back, compare with the manifest).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from envdoctor.fact_readers import load_message, state
from envdoctor.facts import Report
from envdoctor.fix import backup as bk
from envdoctor.fix import owned
from envdoctor.fix import recover as rc
from envdoctor.fix.compat_install import build_compat_wheel
from envdoctor.fix.journal import Journal
from envdoctor.fix.lock import EnvLock
from envdoctor.fix.pip_runner import Pip, TargetInfo
from envdoctor.fix.plan import Action, Plan
from envdoctor.fix.wheels import norm_name, parse_wheel_filename, wheel_metadata, wheel_targets

Echo = Callable[[str], None]
KEEP_COMMITTED = 3  # committed transactions whose backups are kept for --undo
TORCH_FAMILY = ("torch",)


class FixFailed(Exception):
    """A step failed; the transaction is rolled back."""


@dataclass
class FixResult:
    status: str  # verified | rolled_back | rollback_incomplete | aborted | undone | undo_refused | busy
    message: str = ""
    txn: Optional[str] = None
    failures: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    pip: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what a rollback could not restore

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet(_: str) -> None:
    pass


# --- what the plan touches ------------------------------------------------------------------


def roots_for(info: TargetInfo, state: Path, user: bool = False) -> bk.Roots:
    """What the backup covers: site-packages and scripts, and the user site's too when the fix touches it."""
    rec: list[str] = []
    flat: list[str] = []
    schemes = [info.paths] + ([info.user.get("paths") or {}] if user else [])
    for paths in schemes:
        for key in ("purelib", "platlib"):
            p = os.path.normpath(paths.get(key, "")) if paths.get(key) else ""
            if p and p not in rec and os.path.isdir(p):
                rec.append(p)
        if paths.get("scripts") and os.path.normpath(paths["scripts"]) not in flat:
            flat.append(os.path.normpath(paths["scripts"]))
    return bk.Roots(tuple(rec), tuple(flat), (), (str(state),))


def _dist_info_dirs(location: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listdir(location)
    except OSError:
        return out
    for n in names:
        if n.endswith(".dist-info"):
            out.setdefault(norm_name(n[: -len(".dist-info")].rsplit("-", 1)[0]), os.path.join(location, n))
    return out


def _top_path(path: str, roots: bk.Roots) -> tuple[str, bool]:
    """(what to back up for this file, whether it lies outside the scanned roots)."""
    for r in roots.recursive:
        if path.startswith(r + os.sep):
            first = os.path.relpath(path, r).split(os.sep, 1)[0]
            return os.path.join(r, first), False
    for r in roots.flat:
        if os.path.dirname(path) == r:
            return path, False
    return path, True


def dist_paths(name: str, roots: bk.Roots) -> tuple[list[str], list[str]]:
    """Top-level trees/files of an installed distribution (from its RECORD) and paths outside the roots."""
    tops: list[str] = []
    outside: list[str] = []
    for root in roots.recursive:
        info = _dist_info_dirs(root).get(norm_name(name))
        if info is None:
            continue
        tops.append(info)
        record = os.path.join(info, "RECORD")
        try:
            lines = Path(record).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
            top_level = os.path.join(info, "top_level.txt")
            if os.path.exists(top_level):
                lines = [t.strip() + "/" for t in Path(top_level).read_text().splitlines() if t.strip()]
        for line in lines:
            rel = line.split(",", 1)[0]
            if not rel:
                continue
            path = os.path.normpath(os.path.join(root, rel))
            top, out = _top_path(path, roots)
            (outside if out else tops).append(top)
            if path.endswith(".py"):  # python's own byte-code twin, if RECORD forgot it
                tops.append(_top_path(os.path.join(os.path.dirname(path), "__pycache__"), roots)[0])
    return sorted(set(tops)), sorted(set(outside))


# --- preparing wheels ---------------------------------------------------------------------


@dataclass
class Prepared:
    action: Action
    wheels: list[Path]


def _requirement_gaps(wheels: list[Path], installed: dict[str, str], markers: dict[str, str]) -> list[str]:
    """Requirements of the wheels that neither the environment nor the wheels satisfy."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    planned: dict[str, str] = {}
    metas = []
    for w in wheels:
        m = wheel_metadata(w)
        metas.append(m)
        planned[norm_name(str(m["name"]))] = str(m["version"])
    gaps: list[str] = []
    for m in metas:
        for text in m["requires"]:
            try:
                req = Requirement(text)
            except Exception:  # noqa: BLE001 - an unparsable requirement is pip's business
                continue
            if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
                continue
            name = norm_name(req.name)
            have = planned.get(name, installed.get(name))
            try:
                ok = have is not None and req.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                ok = have is not None
            if not ok:
                spec = f"{req.name}{str(req.specifier)}"
                if spec not in gaps:
                    gaps.append(spec)
    return gaps


def prepare(plan: Plan, pip: Pip, info: TargetInfo, report: Report, wheel_dir: Path, allow_torch: bool,
            echo: Echo) -> list[Prepared]:
    out: list[Prepared] = []
    installed = {k: p.version for k, p in report.packages.items()}
    for action in plan.runnable:
        for d in action.remove:
            installed.pop(norm_name(d), None)
        adir = wheel_dir / f"{len(out):02d}-{action.kind}"
        adir.mkdir(parents=True, exist_ok=True)
        if action.kind == "compat":
            echo("  building the compat wheel")
            out.append(Prepared(action, [build_compat_wheel(adir)]))
            continue
        specs = list(action.install)
        built: list[Path] = []
        if action.kind == "build":
            from envdoctor.fix.build_step import BuildFailed, build_wheel

            try:
                built = [build_wheel(action, adir, echo)]
            except BuildFailed as exc:
                raise FixFailed(f"the build did not produce a wheel; nothing was installed:\n{exc}") from None
            specs = _requirement_gaps(built, installed, info.markers)
        wheels = list(built)
        for _round in range(6):
            if not specs:
                break
            echo(f"  downloading {' '.join(specs)} (binary only, no cache)")
            res = pip.run("download", "--no-cache-dir", "--only-binary=:all:", "--no-deps", "-d", str(adir),
                          *action.sources, *specs, name="download",
                          isolated="--no-index" in action.sources)
            if not res.ok:
                raise FixFailed(f"pip could not get {' '.join(specs)}:\n{res.tail()}")
            wheels = sorted(adir.glob("*.whl"))
            specs = _requirement_gaps(wheels, installed, info.markers)
        if specs:
            raise FixFailed(f"requirements still unresolved after 6 rounds: {' '.join(specs)}")
        names = {parse_wheel_filename(w.name)[0]: w for w in wheels}
        if not allow_torch and action.kind != "torch":
            for t in TORCH_FAMILY:
                if t in names:
                    raise FixFailed(f"{' '.join(action.install)} would change {t} (to "
                                    f"{parse_wheel_filename(names[t].name)[1]}): pass --allow-torch-change to "
                                    "allow it, or --pin another version")
        for w in wheels:  # later actions see what earlier ones will have installed
            n, v = parse_wheel_filename(w.name)
            installed[n] = v
        out.append(Prepared(action, wheels))
    return out


def touched_paths(prepared: list[Prepared], report: Report, info: TargetInfo,
                  roots: bk.Roots) -> tuple[list[str], bk.Roots]:
    """Everything to back up, and the roots extended by paths outside site-packages/scripts."""
    to_back: set[str] = set()
    extra: set[str] = set()
    for p in prepared:
        names = set(norm_name(d) for d in p.action.remove)
        for w in p.wheels:
            name = parse_wheel_filename(w.name)[0]
            if name in report.packages:
                names.add(name)  # pip replaces it
            for t in wheel_targets(w, info.paths, info.windows):
                top, is_outside = _top_path(os.path.normpath(str(t)), roots)
                if is_outside:
                    extra.add(top)
                if os.path.lexists(top):
                    to_back.add(top)
        for n in names:
            tops, outside = dist_paths(n, roots)
            to_back.update(t for t in tops if os.path.lexists(t))
            for o in outside:
                extra.add(o)
                if os.path.lexists(o):
                    to_back.add(o)
    new_roots = bk.Roots(roots.recursive, roots.flat, tuple(sorted(extra)), roots.exclude)
    return sorted(to_back), new_roots


# --- verification -------------------------------------------------------------------------


def run_imports(python: str, statements: list[str], timeout: float = 300) -> list[str]:
    failures = []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"  # its error is read as UTF-8, not in the console's code page
    for stmt in statements:
        with tempfile.TemporaryDirectory(prefix="envdoctor-verify-") as cwd:
            try:
                proc = subprocess.run([python, "-c", stmt], capture_output=True, env=env, cwd=cwd,
                                      encoding="utf-8", errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                failures.append(f"`{stmt}`: no answer within {timeout:g} s")
                continue
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit {proc.returncode}"]
            failures.append(f"`{stmt}`: {last[0][:300]}")
    return failures


def verify(plan: Plan, after: Report, python: str, timeout: float, echo: Echo = _quiet) -> list[str]:
    failures: list[str] = []
    for a in plan.runnable:
        for comp in a.verify.components_ok:
            status = state(after, comp)
            if status != "ok":
                msg = load_message(after, comp, last=True, limit=200)
                failures.append(f"{comp}: {status}" + (f" ({msg})" if msg else ""))
        for dist, version in a.verify.present.items():
            pkg = after.packages.get(norm_name(dist))
            if pkg is None:
                failures.append(f"{dist} is not installed")
            elif version and pkg.version != version:
                failures.append(f"{dist} is {pkg.version}, expected {version}")
        for dist in a.verify.absent:
            if norm_name(dist) in after.packages:
                failures.append(f"{dist} is still installed")
        failures += run_imports(python, a.verify.imports, timeout)
        if a.verify.ops:
            from envdoctor.probe import verify_ops

            ops = verify_ops(python, a.verify.ops, a.verify.ops_device, timeout=max(timeout, 300.0))
            failures += ops.failures
            if not ops.failures:
                echo(f"  verified with the compiled {ops.ext_file}: {', '.join(a.verify.ops)} ran on {ops.device}")
    return failures


# --- the transaction ------------------------------------------------------------------------


def _prune(state: Path) -> None:
    committed = [j for j in Journal.all(state) if j.data.get("kind") == "fix" and j.state == "committed"]
    for j in committed[:-KEEP_COMMITTED]:
        rc.cleanup(j, keep_backup=False)
        j.set(state="committed", undo_available=False)


def _record_written(j: Journal, before: bk.Manifest, roots: bk.Roots) -> None:
    """How the transaction left every path it changed so far: a recovery undoes only these, and only while
    they still look like this."""
    j.save_json(owned.WRITTEN, owned.snapshot(before, roots))


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
               probe: Callable[[], Report], timeout: float, echo: Echo = _quiet) -> tuple[FixResult, Optional[Report]]:
    """Run the plan's actions as one transaction. The caller holds `lock`."""
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
    dirty = False  # a pip step began after the last record of what the transaction wrote
    try:
        j.step("prepare")
        prepared = prepare(plan, pip, info, report, j.path("wheels"), allow_torch, echo)
        to_back, roots = touched_paths(prepared, report, info, roots)
        j.set(roots=roots.to_dict())
        j.step("prepare", "end", wheels=[w.name for p in prepared for w in p.wheels])

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
                _record_written(j, before, roots)
                dirty = False
                j.step(f"uninstall:{dist}", "end")
            name = "install" if i == 0 else f"install-{i + 1}"
            j.save_json(f"intent-{name}.json", {"kind": "install", "wheels": [
                owned.wheel_intent(w, _install_root(w, info), info.paths.get("scripts", ""), info.windows)
                for w in p.wheels]})
            dirty = True
            j.step(name, intent=f"intent-{name}.json")
            watch = [str(t) for w in p.wheels for t in wheel_targets(w, info.paths, info.windows)
                     if not os.path.lexists(t)]
            echo(f"  pip install {' '.join(w.name for w in p.wheels)}")
            res = pip.run("install", "--no-index", "--no-deps", "--no-cache-dir", "--user" if user else "--no-user",
                          "--force-reinstall",
                          *[str(w) for w in p.wheels], name=name, watch=watch, isolated=True)
            if not res.ok:
                raise FixFailed(f"pip install failed:\n{res.tail()}")
            _record_written(j, before, roots)
            dirty = False
            j.step(name, "end")

        j.step("verify")
        echo("  verifying: probing the environment again")
        after = probe()
        failures = verify(plan, after, info.python, timeout, echo)
        if failures:
            j.step("verify", "end", failures=failures)
            result.failures = failures
            raise FixFailed("the fresh probe does not confirm the fix:\n  " + "\n  ".join(failures))
        j.step("verify", "end")

        j.step("commit")
        post = bk.scan(roots)
        j.save_json("manifest-after.json", post)
        added, removed, changed = bk.diff(before, post)
        result.changes = {"added": len(added), "removed": len(removed), "changed": len(changed)}
        j.set(state="committed", changes=result.changes, undo_available=True)
        j.step("commit", "end")
        rc.cleanup(j, keep_backup=True)
        _prune(state)
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


# --- the target -------------------------------------------------------------------------------


def prefix_of(python: Optional[str]) -> Optional[str]:
    """The prefix (sys.prefix) of the interpreter `check`/`fix` will look at, or None if it cannot tell."""
    try:
        from envdoctor.probe.target import resolve

        exe = resolve(python).executable
        # UTF-8 both ways: a prefix like C:\Users\张三\… is not in every code page
        proc = subprocess.run([exe, "-c", "import sys; sys.stdout.write(sys.prefix)"], capture_output=True,
                              encoding="utf-8", errors="surrogateescape", timeout=30, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                   "PYTHONIOENCODING": "utf-8:surrogateescape"})
        return proc.stdout.strip() or None if proc.returncode == 0 else None
    except Exception:  # noqa: BLE001 - the probe that follows reports a bad interpreter properly
        return None
