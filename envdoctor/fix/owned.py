"""What a transaction itself wrote, and how each path looked when it left it.

A recovery may only undo the transaction's own work, so the transaction records, after every
step that changes the environment, the state it left each path in (`written.json`: path ->
file sha256 / directory / symlink target / absent). For a step that was cut off half-way
(the process killed while pip ran) there is no such record; what pip did is then read from
pip's own RECORD of the distribution it was installing (written when pip finishes, e.g. by a
pip orphaned by `kill -9` that ran to its end), else from the wheel's RECORD (its files and
their sha256). A path is the transaction's only while it still looks exactly like that.
"""

from __future__ import annotations

import base64
import csv
import os
import stat
from pathlib import Path
from typing import Any, Optional

from envdoctor.filehash import sha256_file
from envdoctor.fix import backup as bk

# A path's state: None (absent), ["f", sha256-hex, mode] (["f", sha256-hex] from a RECORD, which has no
# mode), ["d"], ["l", target], or ANY (present, any content:
# files pip writes without a digest in RECORD, such as byte-code, INSTALLER and RECORD itself), or
# ["p", wheel, member]: a file pip was writing when it was killed (see cut_off).
State = Optional[list]
ANY = ["*"]
WRITTEN = "written.json"


def state_of(path: str) -> State:
    """The current state of `path` (reads the file to hash it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return ["l", os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        return ["d"]
    try:
        return ["f", sha256_file(path), stat.S_IMODE(st.st_mode)]
    except OSError:  # unreadable: a state no record can match, so it is never taken for ours
        return ["f", "unreadable", stat.S_IMODE(st.st_mode)]


def matches(current: State, expected: State) -> bool:
    if expected is None or current is None:
        return expected is current
    if expected == ANY:
        return True
    if expected[0] == "f" and len(expected) == 2:  # from a RECORD: the bytes, not the mode
        return list(current[:2]) == list(expected)
    return list(current) == list(expected)


def snapshot(before: bk.Manifest, roots: bk.Roots, now: Optional[bk.Manifest] = None) -> dict[str, State]:
    """Every path under the roots that differs from `before` now (`now`: a scan of the roots just made),
    with its state (None = removed)."""
    if now is None:
        now = bk.scan(roots)
    added, removed, changed = bk.diff(before, now)
    out: dict[str, State] = {p: None for p in removed}
    for p in added + changed:
        out[p] = state_of(p)
    return out


def _record_digest(field: str) -> Optional[str]:
    """`sha256=<urlsafe b64>` from a RECORD row -> hex digest; None when absent or another algorithm."""
    algo, _, b64 = field.partition("=")
    if algo != "sha256" or not b64:
        return None
    try:
        return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    except ValueError:
        return None


def record_states(root: str, rows: list[list[str]]) -> dict[str, State]:
    """Paths and states from RECORD rows (relative to `root`), with the directories they create."""
    out: dict[str, State] = {}
    for row in rows:
        if not row or not row[0]:
            continue
        path = os.path.normpath(os.path.join(root, row[0]))
        digest = _record_digest(row[1]) if len(row) > 1 else None
        out[path] = ["f", digest] if digest else ANY
        if path.endswith(".py"):  # the byte-code pip compiles for it (listed without digest, or not at all)
            d, name = os.path.split(path)
            out.setdefault(os.path.join(d, "__pycache__"), ["d"])
        parent = os.path.dirname(path)
        while parent.startswith(root + os.sep):
            out.setdefault(parent, ["d"])
            parent = os.path.dirname(parent)
    return out


def read_record(path: str) -> Optional[list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def in_flight(intent: list[dict[str, Any]]) -> dict[str, list[State]]:
    """States an install step cut off half-way may have left: pip's installed RECORD if pip got that far,
    else the wheel's RECORD. Every listed path may also still be as it was (not written yet)."""
    out: dict[str, list[State]] = {}
    for w in intent:
        root = w["root"]
        info = os.path.join(root, w["dist_info"])
        rows = read_record(os.path.join(info, "RECORD")) or w["record"]
        states = record_states(root, rows)
        states.setdefault(info, ["d"])
        for extra in ("INSTALLER", "RECORD", "REQUESTED", "direct_url.json"):
            states.setdefault(os.path.join(info, extra), ANY)
        for s in w.get("scripts", []):
            states.setdefault(s, ANY)
        for p, s in states.items():
            out.setdefault(p, []).append(s)
        last = _last_copied(w["wheel"], root) if w.get("wheel") else None
        if last is not None:  # the one file pip was copying when it was killed may be cut short
            out.setdefault(last[0], []).append(["p", w["wheel"], last[1]])
    return out


def _last_copied(wheel: str, root: str) -> Optional[tuple[str, str]]:
    """(path, member) of the last file of the wheel's root scheme, in the archive's order (pip copies them in
    that order), that exists now: the one pip was copying when it was killed. None if none can be read."""
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    for member in reversed(names):
        if member.endswith("/") or member.split("/", 1)[0].endswith(".data"):
            continue
        path = os.path.normpath(os.path.join(root, member))
        if os.path.lexists(path):
            return path, member
    return None


def cut_off(path: str, states: list[State]) -> bool:
    """`path` is the file pip was writing when it was killed (the last one of its wheel present, in_flight)
    and its bytes are a proper prefix of that member. pip writes each file of a wheel in place (open, copy,
    close), and it dies with envdoctor, so a kill -9 can leave the one file it was copying short (even
    empty). Only the wheel's own bytes count: a file with anything else in it is not pip's."""
    import zipfile

    parts = [s for s in states if s and s[0] == "p"]
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not parts or not stat.S_ISREG(st.st_mode):
        return False
    for _, wheel, member in parts:
        try:
            with zipfile.ZipFile(wheel) as zf:
                if st.st_size >= zf.getinfo(member).file_size:
                    continue  # complete: its digest decides (a state "f")
                with zf.open(member) as want, open(path, "rb") as have:
                    left = st.st_size
                    while left > 0:
                        got = have.read(min(1 << 16, left))
                        if not got or got != want.read(len(got)):
                            break
                        left -= len(got)
                    else:
                        return True
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            continue
    return False


def wheel_intent(wheel: Path, root: str, scripts_dir: str, windows: bool = False) -> dict[str, Any]:
    """What installing `wheel` is about to write, saved before pip starts: the root it installs into, its
    .dist-info directory, its RECORD rows (the wheel's own files with sha256) and its console scripts."""
    import zipfile

    from envdoctor.fix.wheels import script_files, wheel_metadata

    meta = wheel_metadata(wheel)
    info = str(meta["dist_info"])
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(f"{info}/RECORD").decode("utf-8", "replace")
    rows = list(csv.reader(text.splitlines()))
    return {"root": root, "dist_info": info, "record": rows, "wheel": str(wheel),
            "scripts": [os.path.join(scripts_dir, s) for s in script_files(list(meta["scripts"]), windows)]}
