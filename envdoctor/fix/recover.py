"""Rolling a transaction back: only what it wrote, only while it is as it left it.

`assess` reads the environment and the transaction's records and writes nothing (so `check` can
show what a recovery would do); `carry_out` does it. Every path the transaction touched is, now:
  - as before the transaction        -> nothing to do (also what makes a rollback idempotent);
  - as the transaction left it       -> put back: delete what it added, restore what it replaced
                                        or removed from the backup;
  - anything else                    -> a conflict: someone changed it since. Nothing is done until
                                        the user chooses (keep theirs, or restore the backup).
Paths the transaction never touched that appeared or changed since are the user's: never touched,
listed in the result.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from envdoctor.filehash import sha256_file
from envdoctor.fix import backup as bk
from envdoctor.fix import holders, owned
from envdoctor.fix.journal import Journal


@dataclass
class Assessment:
    delete: list[str] = field(default_factory=list)  # the transaction added them; still as it left them
    restore: list[str] = field(default_factory=list)  # it replaced or removed them; put the backup back
    conflicts: list[str] = field(default_factory=list)  # it touched them, and they changed since
    yours: list[str] = field(default_factory=list)  # not its work: appeared/changed since (top-level names)
    yours_count: int = 0
    pip_leftovers: list[str] = field(default_factory=list)  # pip's `~name` stash folders it could not delete
    blocked: list[str] = field(default_factory=list)  # "<dir>: why it cannot be written"
    already: int = 0  # touched paths that are already as before

    @property
    def work(self) -> int:
        return len(self.delete) + len(self.restore)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(j: Journal, name: str, default: Any) -> Any:
    try:
        return j.load_json(name)
    except (OSError, ValueError):
        return default


def txn_states(j: Journal, before: bk.Manifest) -> dict[str, list[owned.State]]:
    """Every path the transaction touched -> the states it may have left it in."""
    out: dict[str, list[owned.State]] = {p: [s] for p, s in _load(j, owned.WRITTEN, {}).items()}
    steps = j.data.get("steps", [])
    ended = {s["step"] for s in steps if s["phase"] == "end"}
    for s in steps:  # pip steps cut off half-way: from the intent saved before pip started
        if s["phase"] != "begin" or s["step"] in ended or "intent" not in s:
            continue
        intent = _load(j, s["intent"], {})
        if intent.get("kind") == "install":
            for p, states in owned.in_flight(intent["wheels"]).items():
                out.setdefault(p, []).extend(states)
        elif intent.get("kind") == "uninstall":
            tops = tuple(intent["tops"])
            for p in before:
                if p in tops or p.startswith(tuple(t + os.sep for t in tops)):
                    out.setdefault(p, []).append(None)
    legacy = any(s["phase"] == "begin" and s["step"].startswith(("uninstall", "install")) and "intent" not in s
                 for s in steps)
    if legacy:
        # an envdoctor from before these records: it cannot tell its own writes from yours, so every change
        # since the before-manifest is a conflict (nothing happens until you choose)
        roots = bk.Roots.from_dict(j.data["roots"])
        added, removed, changed = bk.diff(before, bk.scan(roots))
        for p in added + removed + changed:
            out.setdefault(p, [])
    return out


class _Before:
    """Is a path as it was before the transaction? (manifest metadata first, the backup's bytes second)"""

    def __init__(self, before: bk.Manifest, backup: bk.Backup) -> None:
        self.before = before
        self.backup = backup

    def matches(self, path: str, cur: owned.State) -> bool:
        b = self.before.get(path)
        if b is None:
            return cur is None
        if cur is None or cur[0] != b[0]:
            return False
        if b[0] == "d":
            return True
        if b[0] == "l":
            return cur[1] == b[5]
        if bk._same(bk.entry_of(path), b):
            return True
        if path in self.backup.index and cur[2] == b[1]:
            try:
                return sha256_file(self.backup.stored(path)) == cur[1]
            except OSError:
                return False
        return False


def _top(path: str, roots: bk.Roots) -> str:
    for r in roots.recursive + roots.flat:
        if path.startswith(r + os.sep):
            return os.path.relpath(path, r).split(os.sep, 1)[0]
    return path


def why_not_writable(directory: str) -> Optional[str]:
    d = directory
    while d and not os.path.isdir(d):  # a directory to be created: its nearest existing parent decides
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    if os.access(d, os.W_OK):
        return None
    try:
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            return f"{d}: read-only file system"
    except (OSError, AttributeError):
        pass
    return f"{d}: not writable (permission denied)"


def os_reason(exc: OSError) -> str:
    """Why a path could not be changed, in the words the user needs."""
    if getattr(exc, "winerror", None) in (32, 33) or exc.errno in (errno.EBUSY, errno.ETXTBSY):
        return "in use by another process (close it and retry)"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _pip_stash(path: str, roots: bk.Roots) -> bool:
    """A folder pip renamed a package to while replacing it (`~mcv`, `~mcv_full-1.7.2.dist-info`):
    pip deletes it at the end, and leaves it on Windows when a file in it is held. It is pip's."""
    return any(path.startswith(r + os.sep) for r in roots.recursive) and _top(path, roots).startswith("~")


def _pip_temp_file(path: str, written: set[str]) -> bool:
    """pip writes some files of a wheel (INSTALLER, RECORD, REQUESTED) through a temporary file beside them,
    `<name>` + 8 random characters + `.tmp`, then renames it. A pip killed in between (it dies with
    envdoctor) leaves that file next to a file the transaction was writing: it is the transaction's."""
    d, name = os.path.split(path)
    stem, dot, digits = name.rpartition(".")
    if stem.endswith(".pyc") and dot and digits.isdigit():
        # byte-code pip was compiling: Python writes `<name>.pyc.<number>` first, then renames it
        return os.path.join(d, stem) in written or bk.derived_bytecode(os.path.join(d, stem), written)
    if not name.endswith(".tmp"):
        return False
    return any(name[:-12] == os.path.basename(w) and os.path.dirname(w) == d for w in written) and len(name) > 12


def assess(j: Journal, on_conflict: Optional[str] = None) -> Assessment:
    """What rolling `j` back would do now. Reads only."""
    a = Assessment()
    before: bk.Manifest = _load(j, "manifest-before.json", {})
    backup = bk.Backup.load(j.path("backup"), _load(j, bk.Backup.INDEX, {}))
    roots = bk.Roots.from_dict(j.data["roots"])
    was = _Before(before, backup)
    states = txn_states(j, before)
    for path in sorted(states):
        cur = owned.state_of(path)
        if was.matches(path, cur):
            a.already += 1
            continue
        if not any(owned.matches(cur, s) for s in states[path]) and not owned.cut_off(path, states[path]):
            a.conflicts.append(path)
            if on_conflict != "restore":
                continue
        if path in before:
            a.restore.append(path)
        else:
            a.delete.append(path)
    gone = set(a.delete)
    now = bk.scan(roots)
    yours: set[str] = set()
    stash: set[str] = set()
    for p, e in now.items():
        if p in states:
            continue
        if p not in before:
            if bk.derived_bytecode(p, gone) or _pip_temp_file(p, set(states)):
                a.delete.append(p)
                continue
        elif bk._same(before[p], e):
            continue
        if _pip_stash(p, roots):
            stash.add(_top(p, roots))
            continue
        a.yours_count += 1
        if not p.endswith(".pyc"):
            yours.add(_top(p, roots))
    for p in before:
        if p not in now and p not in states:
            a.yours_count += 1
            yours.add(_top(p, roots))
    a.yours = sorted(yours)
    a.pip_leftovers = sorted(stash)
    dirs = {os.path.dirname(p) for p in a.delete + a.restore}
    a.blocked = sorted({w for d in dirs if (w := why_not_writable(d))})
    return a


def carry_out(j: Journal, a: Assessment) -> list[str]:
    """Do what `assess` found. Returns the paths it could not put back, each with the reason."""
    before: bk.Manifest = _load(j, "manifest-before.json", {})
    backup = bk.Backup.load(j.path("backup"), _load(j, bk.Backup.INDEX, {}))
    problems: list[str] = []
    failed: list[tuple[str, OSError]] = []
    deepest_first = sorted(a.delete, key=lambda p: p.count(os.sep), reverse=True)
    for p in deepest_first:
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                os.rmdir(p)  # only when empty: whatever else is inside is not the transaction's
            else:
                os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # it holds your files (listed as yours), so it stays
            failed.append((p, exc))
    for p in sorted((p for p in a.restore if before[p][0] == "d"), key=len):
        try:
            if os.path.lexists(p) and not os.path.isdir(p):
                os.unlink(p)
            os.makedirs(p, exist_ok=True)
            os.chmod(p, before[p][1])
        except OSError as exc:
            failed.append((p, exc))
    leaves = [p for p in a.restore if before[p][0] != "d"]
    missing = [p for p in leaves if p not in backup.index]
    problems += [f"{p}: not in the backup, cannot be restored" for p in missing]
    for p in leaves:
        cur = bk.entry_of(p)
        if cur is not None and cur[0] == "d":
            try:
                shutil.rmtree(p)
            except OSError as exc:
                failed.append((p, exc))
    problems += holders.explain(failed, reason=os_reason)  # a path a process holds: which, what to close
    problems += backup.restore(only=[p for p in leaves if p in backup.index])
    return problems


def summary(a: Assessment) -> str:
    """One paragraph on what a recovery does / did."""
    parts = [f"removes {len(a.delete)} and restores {len(a.restore)} paths the fix wrote"]
    if a.already:
        parts.append(f"{a.already} already as before")
    text = "; ".join(parts)
    if a.yours:
        shown = ", ".join(a.yours[:8]) + (", …" if len(a.yours) > 8 else "")
        text += f"; leaves alone what appeared or changed since ({a.yours_count} paths: {shown})"
    return text


def cleanup(j: Journal, keep_backup: bool) -> None:
    shutil.rmtree(j.path("wheels"), ignore_errors=True)
    if not keep_backup:
        shutil.rmtree(j.path("backup"), ignore_errors=True)


def rollback(j: Journal, echo: Any = None, on_conflict: Optional[str] = None) -> dict[str, Any]:
    """Undo the transaction's own writes. Changes nothing when a path conflicts (unless the user chose
    `on_conflict`) or a directory cannot be written. Idempotent. Returns what happened, for the journal."""
    say = echo or (lambda _m: None)
    pip_began = any(s["step"].startswith(("uninstall", "install")) for s in j.data["steps"])
    if not pip_began or not j.path("manifest-before.json").exists():
        j.step("rollback")
        j.step("rollback", "end", note="nothing had been changed")
        j.set(state="aborted")
        cleanup(j, keep_backup=False)
        return {"status": "aborted", "assessment": Assessment().to_dict()}
    a = assess(j, on_conflict)
    if a.conflicts and on_conflict is None:
        j.set(state="rollback_conflict", conflicts=a.conflicts[:50])
        return {"status": "conflict", "assessment": a.to_dict()}
    if a.blocked:
        j.set(state="rollback_blocked", problems=a.blocked[:50])
        return {"status": "blocked", "assessment": a.to_dict()}
    j.set(state="rolling_back")
    j.step("rollback", on_conflict=on_conflict)
    say(f"  rolling back: {summary(a)}")
    problems = carry_out(j, a)
    if not problems:  # what it did must now be as before
        again = assess(j, on_conflict)
        problems = [f"{p}: still differs" for p in again.delete + again.restore
                    if not (os.path.isdir(p) and os.listdir(p))]  # a directory kept for your files in it
        problems += [f"{p}: changed while rolling back" for p in again.conflicts if p not in a.conflicts]
    j.step("rollback", "end", problems=len(problems))
    if problems:
        j.set(state="rollback_incomplete", problems=problems[:50])
        return {"status": "rollback_incomplete", "problems": problems, "assessment": a.to_dict()}
    j.set(state="rolled_back", left_alone=a.yours[:50], kept_conflicts=a.conflicts[:50] if on_conflict == "keep"
          else [])
    cleanup(j, keep_backup=False)
    return {"status": "rolled_back", "assessment": a.to_dict()}


DONE = ("rolled_back", "aborted", "undone")


def _where(j: Journal) -> str:
    last = j.data["steps"][-1] if j.data.get("steps") else {"step": "start", "phase": "begin"}
    return last["step"] if last["phase"] == "begin" else f"{last['step']}:end"


def describe(j: Journal) -> dict[str, Any]:
    """What a pending journal is about: which fix, stopped where and when, how to recover it."""
    steps = j.data.get("steps") or []
    actions = [a.get("title", "") for a in (j.data.get("plan") or {}).get("actions", []) if a.get("applies", True)]
    python = str(j.data.get("python") or "")
    return {"txn": j.id, "kind": j.data.get("kind"), "state": j.state, "interrupted_at": _where(j),
            "since": j.data.get("created"), "last_step_at": steps[-1]["time"] if steps else j.data.get("created"),
            "pid": j.data.get("pid"), "actions": actions, "python": python,
            "state_dir": str(j.dir.parent.parent), "recover_command": recover_command(python)}


def recover_command(python: str, on_conflict: Optional[str] = None) -> str:
    import platform

    from envdoctor import commandline as shell

    opt = f" --on-conflict {on_conflict}" if on_conflict else ""  # run here, so quoted for this machine's shell
    return f"envdoctor fix --recover{opt} --python {shell.program(python, platform.system()) if python else '<python>'}"


def announce(j: Journal, on_conflict: Optional[str] = None) -> str:
    d = describe(j)
    what = "; ".join(d["actions"]) or d["kind"]
    return (f"envdoctor: a {d['kind']} was interrupted ({d['txn']}: {what}; stopped at {d['interrupted_at']}, "
            f"{d['last_step_at']}); recovering it first" + (f" (conflicts: {on_conflict})" if on_conflict else ""))


def _held(state: str) -> bool:
    """Is the environment's lock held right now? Reads only (a shared lock on a read-only descriptor)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: cannot tell without writing
        return False
    try:
        fd = os.open(os.path.join(state, "lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def pending_report(state: Any, with_assessment: bool = True) -> Optional[dict[str, Any]]:
    """For `check`: the oldest unfinished transaction of the environment and what recovering it would do
    (unless `with_assessment` is False: that reads the files the fix wrote). Reads only: no lock taken,
    nothing written."""
    if not os.path.isdir(state):
        return None
    for j in Journal.all(state):
        if j.terminal:
            continue
        d = describe(j)
        d["running"] = _held(str(state))
        if with_assessment and j.data.get("kind") == "fix" and j.path("manifest-before.json").exists():
            try:
                d["assessment"] = assess(j).to_dict()
            except (OSError, ValueError, KeyError) as exc:
                d["assessment_error"] = f"{type(exc).__name__}: {exc}"
        if j.data.get("problems"):
            d["problems"] = j.data["problems"][:20]
        return d
    return None
