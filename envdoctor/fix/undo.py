"""Finishing interrupted transactions and undoing the last committed fix of one environment.

The caller holds the environment's lock. An interrupted fix is rolled back by envdoctor.fix.recover
(only what it wrote); an interrupted undo is run again (each of its steps is idempotent).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from envdoctor.errors import UsageError
from envdoctor.fix import backup as bk
from envdoctor.fix import recover as rc
from envdoctor.fix.journal import Journal
from envdoctor.fix.result import FixResult

Echo = Callable[[str], None]
KEEP_COMMITTED = 3  # committed transactions whose backups are kept for --undo


def _quiet(_: str) -> None:
    pass


def _finish(j: Journal, echo: Echo, on_conflict: Optional[str]) -> dict[str, Any]:
    rec = rc.describe(j)
    if j.data.get("kind") == "undo":
        problems = _run_undo(j, echo)
        return {**rec, "status": "undone" if not problems else "undo_incomplete", "problems": problems[:20]}
    done = rc.rollback(j, echo, on_conflict)
    return {**rec, **done, "problems": done.get("problems", [])[:20], "on_conflict": on_conflict}


def recover_locked(state: Path, echo: Echo = _quiet, on_conflict: Optional[str] = None) -> list[dict[str, Any]]:
    """Finish every interrupted transaction of this environment, saying first what it will do. The caller
    holds the lock. Stops at the first one that cannot finish (a conflict, a read-only directory)."""
    out = []
    for j in Journal.all(state):
        if j.terminal:
            continue
        echo(rc.announce(j, on_conflict))
        out.append(_finish(j, echo, on_conflict))
        if out[-1]["status"] not in rc.DONE:
            break
    return out


def _run_undo(u: Journal, echo: Echo) -> list[str]:
    state = u.dir.parent.parent
    t = Journal.load(state / "txn" / u.data["of"])
    if t is None:
        u.set(state="done", error="the fix's journal is gone")
        return ["the fix's journal is gone"]
    before = t.load_json("manifest-before.json")
    after = t.load_json("manifest-after.json")
    backup = bk.Backup.load(t.path("backup"), t.load_json(bk.Backup.INDEX))
    roots = bk.Roots.from_dict(t.data["roots"])
    u.step("undo")
    echo("  removing what the fix added, restoring what it replaced")
    problems = bk.undo_to(before, after, roots, backup)
    u.step("undo", "end", problems=len(problems))
    if problems:
        u.set(state="undo_incomplete", problems=problems[:50])
        return problems
    t.set(state="undone", undone_by=u.id)
    u.set(state="done")
    rc.cleanup(t, keep_backup=False)
    return []


def prune_committed(state: Path) -> None:
    """Keep the backups of the last KEEP_COMMITTED committed fixes only; older ones can no longer be undone."""
    committed = [j for j in Journal.all(state) if j.data.get("kind") == "fix" and j.state == "committed"]
    for j in committed[:-KEEP_COMMITTED]:
        rc.cleanup(j, keep_backup=False)
        j.set(state="committed", undo_available=False)


def last_committed(state: Path) -> Optional[Journal]:
    commits = [j for j in Journal.all(state) if j.data.get("kind") == "fix" and j.state == "committed"
               and j.data.get("undo_available", True)]
    return commits[-1] if commits else None


def undo_last(state: Path, echo: Echo = _quiet) -> FixResult:
    """Revert the last committed fix of this environment. The caller holds the lock."""
    t = last_committed(state)
    if t is None:
        raise UsageError("nothing to undo: no applied fix is recorded for this environment "
                         f"(state directory {state})")
    before = t.load_json("manifest-before.json")
    after = t.load_json("manifest-after.json")
    backup = bk.Backup.load(t.path("backup"), t.load_json(bk.Backup.INDEX))
    touched = set(after) - set(before) | set(backup.index)
    blocked = sorted({w for d in {os.path.dirname(p) for p in touched} if (w := rc.why_not_writable(d))})
    if blocked:  # refuse before the first change, and say why: not "changed", but "cannot write"
        return FixResult(status="undo_refused", txn=t.id, failures=blocked,
                         message=f"cannot undo fix {t.id}: " + "; ".join(blocked[:5]) + ". Nothing was changed; "
                                 "make it writable (or remount it read-write) and run `envdoctor fix --undo` again")
    changed = bk.drift(before, after, backup)
    if changed:
        shown = "\n  ".join(changed[:10]) + ("\n  ..." if len(changed) > 10 else "")
        return FixResult(status="undo_refused", txn=t.id, failures=changed[:50],
                         message=f"the environment changed after fix {t.id}; undoing it would lose those "
                                 f"changes ({len(changed)} paths):\n  {shown}")
    u = Journal.create(state, "undo", of=t.id, python=t.data.get("python"), prefix=t.data.get("prefix"))
    problems = _run_undo(u, echo)
    if problems:
        return FixResult(status="undo_incomplete", txn=t.id, problems=problems,
                         message=f"undo of {t.id} could not restore {len(problems)} paths")
    return FixResult(status="undone", txn=t.id, message=f"fix {t.id} undone: the environment is as before it")
