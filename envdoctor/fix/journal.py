"""The transaction journal: one JSON file per fix (or undo), rewritten atomically and fsynced.

Every step is recorded twice, `begin` before it runs and `end` after, so that after a
crash the next run knows how far the last one got. Big data (the file manifests) lives in
sibling files written before the step that relies on them begins.

Fault injection for the tests (and for anyone who wants to see recovery work), by step
name as recorded in the journal (`backup`, `uninstall:mmcv-lite`, `install`, `verify`,
`commit`, `rollback`, ...), optionally suffixed `:end` (or `:during` for install steps: pip's, or
envdoctor's own write of the compat wheel, fix/own_wheel.py):
  ENVDOCTOR_FIX_CRASH_AT=<step>[,<step>...]   SIGKILL this process at that point
  ENVDOCTOR_FIX_FAIL_AT=<step>                raise there (the normal failure path)
  ENVDOCTOR_FIX_PAUSE_AT=<step>=<seconds>     sleep there (to make two runs overlap)
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

# States in which a journal needs nothing more; anything else ("begun", "rolling_back",
# "rollback_incomplete", "rollback_conflict", "rollback_blocked", an undo's "begun") means a run was
# interrupted or could not finish restoring: `check` reports it (ED601, reading only) and
# `envdoctor fix --recover` (or the next `fix --apply` / `--undo`, after saying so) takes it up again.
T = TypeVar("T")
TERMINAL = ("committed", "rolled_back", "aborted", "undone", "done")


class InjectedFault(RuntimeError):
    """Raised where ENVDOCTOR_FIX_FAIL_AT asks for it."""


def _tokens(var: str) -> list[str]:
    return [t.strip() for t in os.environ.get(var, "").split(",") if t.strip()]


def _matches(token: str, name: str, phase: str) -> bool:
    return token == f"{name}:{phase}" or (phase == "begin" and token == name)


def fault_point(name: str, phase: str) -> None:
    """Crash, fail or pause here if the environment asks for it."""
    for tok in _tokens("ENVDOCTOR_FIX_PAUSE_AT"):
        where, _, secs = tok.partition("=")
        if _matches(where, name, phase):
            time.sleep(float(secs or 1))
    if any(_matches(t, name, phase) for t in _tokens("ENVDOCTOR_FIX_CRASH_AT")):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    if any(_matches(t, name, phase) for t in _tokens("ENVDOCTOR_FIX_FAIL_AT")):
        raise InjectedFault(f"fault injected at {name}:{phase} (ENVDOCTOR_FIX_FAIL_AT)")


def wants_crash(name: str, phase: str) -> bool:
    return any(_matches(t, name, phase) for t in _tokens("ENVDOCTOR_FIX_CRASH_AT"))


# Windows refuses to rename over a file another process has open without delete sharing (WinError 5 /
# 32): `envdoctor check` reading the journal while a fix writes it. Both sides retry for this long.
SHARING_RETRY_SECONDS = 2.0


def retry_sharing(op: Callable[[], T], seconds: float = SHARING_RETRY_SECONDS) -> T:
    """Run `op`, again while it fails with PermissionError (a sharing violation on Windows) for up to
    `seconds`; the last error is raised. On POSIX a rename or read never fails that way: one try."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            return op()
        except PermissionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def write_json_durably(path: Path, data: Any, indent: Optional[int] = 1,
                       replace: Callable[[Path, Path], None] = os.replace) -> None:
    """Write, fsync, rename over, fsync the directory: after a crash the file is old or new, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        # json.dumps, not json.dump: dump streams through the pure-Python encoder (10x slower; the manifests of a
        # site-packages with torch hold ~30,000 entries), dumps without indent takes the C one
        f.write(json.dumps(data, indent=indent, default=str))
        f.flush()
        os.fsync(f.fileno())
    retry_sharing(lambda: replace(tmp, path))
    if os.name == "posix":  # the rename itself must reach the disk (no directory handles on Windows)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    FILE = "journal.json"

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.dir = directory
        self.data = data

    # -- creation and loading -------------------------------------------------------------

    @classmethod
    def create(cls, state: Path, kind: str, **fields: Any) -> "Journal":
        txns = state / "txn"
        txns.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        n = 0
        while True:
            txn_id = f"{stamp}-{n:03d}"
            try:
                (txns / txn_id).mkdir()
                break
            except FileExistsError:
                n += 1
        data = {"id": txn_id, "kind": kind, "state": "begun", "created": _now(), "pid": os.getpid(),
                "steps": []}
        data.update(fields)
        j = cls(txns / txn_id, data)
        j.write()
        return j

    @classmethod
    def load(cls, directory: Path, read: Optional[Callable[[Path], str]] = None) -> Optional["Journal"]:
        """The journal in `directory`, or None if it has none (or it is not JSON). A read that meets the
        writer's rename on Windows (PermissionError) is retried: a pending fix must not look absent."""
        reader = read or (lambda p: p.read_text(encoding="utf-8"))
        try:
            data = json.loads(retry_sharing(lambda: reader(directory / cls.FILE)))
        except (OSError, ValueError):
            return None
        return cls(directory, data)

    @staticmethod
    def all(state: Path) -> list["Journal"]:
        """Every journal of this environment, oldest first (ids sort by time)."""
        txns = state / "txn"
        if not txns.is_dir():
            return []
        out = []
        for d in sorted(txns.iterdir()):
            j = Journal.load(d)
            if j is not None:
                out.append(j)
        return out

    # -- recording --------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def state(self) -> str:
        return str(self.data.get("state"))

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def write(self) -> None:
        write_json_durably(self.dir / self.FILE, self.data)

    def step(self, name: str, phase: str = "begin", **detail: Any) -> None:
        rec: dict[str, Any] = {"step": name, "phase": phase, "time": _now()}
        if detail:
            rec.update(detail)
        self.data["steps"].append(rec)
        self.write()
        fault_point(name, phase)

    def set(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def ended(self, name: str) -> bool:
        return any(s["step"] == name and s["phase"] == "end" for s in self.data["steps"])

    def path(self, name: str) -> Path:
        return self.dir / name

    def save_json(self, name: str, data: Any) -> None:
        write_json_durably(self.dir / name, data, indent=None)

    def load_json(self, name: str) -> Any:
        return json.loads((self.dir / name).read_text(encoding="utf-8"))
