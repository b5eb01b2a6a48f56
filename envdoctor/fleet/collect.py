"""Read the members' records back into one report per member, and say why the others gave none.

Two sources, one result: the output of a launcher run now (`fleet run`), or files gathered any
other way (`fleet summarize`): launcher logs with records, plain `check --format json` reports,
a directory of either, or stdin.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Optional

from envdoctor.errors import UsageError
from envdoctor.fleet import record
from envdoctor.fleet.fingerprint import NodeFacts, check_report, node_facts

# how launchers say a task ended by itself (srun: "task 3: Killed", "Exited with exit code 1"; pdsh: "exit code")
_DIED = re.compile(r"Killed|Segmentation fault|Aborted|Bus error|exit code [1-9]|exited with exit code", re.I)
# why a member gave no report (docs/fleet.md; the summary schema lists the same)
REASONS = ("timeout", "launcher_error", "crash", "error", "garbled", "not_a_report")


@dataclass
class Member:
    """One member's report, reduced to its fingerprint as soon as it is complete (10,000 decoded
    reports would not fit in memory; their fingerprints do)."""

    node: str
    task: Optional[str]
    facts: Optional[NodeFacts]
    problem: str = ""  # why the JSON that arrived is not a report this envdoctor reads (facts is None)
    source: str = ""


def member(node: str, task: Optional[str], data: Any, source: str = "") -> Member:
    why = check_report(data)
    return Member(node, task, None if why else node_facts(data), why or "", source)


@dataclass
class Missing:
    node: str
    task: Optional[str]
    reason: str
    detail: str


@dataclass
class Collected:
    members: list[Member] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    launcher: Optional[dict[str, Any]] = None
    stray_records: int = 0  # records of another run (a reused log) that were ignored


@dataclass
class _State:
    hello: bool = False
    # parts by digest: a member that sent its report twice (a relaunch into the same log) has two
    sent: dict[str, tuple[int, dict[int, str]]] = field(default_factory=dict)
    error: Optional[str] = None
    bye: bool = False
    garbled: int = 0
    done: Optional[Member] = None  # the last complete report, already reduced to its fingerprint
    problem: str = ""  # a complete set of parts that did not decode
    source: str = ""


class Assembler:
    """Feeds on lines in any order and interleaving; knows, per (node, task), what arrived."""

    def __init__(self, run: Optional[str] = None) -> None:
        self.run = run
        self.states: dict[tuple[str, Optional[str]], _State] = {}
        self.sizes: set[int] = set()
        self.garbled_unattributed = 0
        self.stray = 0
        self.completed = 0  # members with a complete report so far

    def feed(self, line: str, source: str = "") -> None:
        try:
            rec = record.parse_line(line)
        except record.GarbledRecord as exc:
            self._garbled(str(exc))
            return
        if rec is None:
            return
        if self.run is not None and rec.run != self.run:
            self.stray += 1
            return
        st = self.states.setdefault(rec.key, _State(source=source))
        info = rec.info
        if rec.kind == "hello":
            st.hello = True
            if isinstance(info.get("size"), int) and info["size"] > 0:
                self.sizes.add(info["size"])
        elif rec.kind == "error":
            st.error = str(info.get("why") or "failed")
        elif rec.kind == "bye":
            st.bye = True
        elif rec.kind == "part":
            i, of, sha, data = info.get("i"), info.get("of"), info.get("sha"), info.get("d")
            if not (isinstance(i, int) and isinstance(of, int) and isinstance(sha, str) and isinstance(data, str)):
                st.garbled += 1
                return
            total, parts = st.sent.setdefault(sha, (of, {}))
            parts[i] = data
            if len(parts) == total:
                del st.sent[sha]
                try:
                    done = member(rec.node, rec.task, record.unpack(parts, sha), source)
                    self.completed += st.done is None
                    st.done = done
                except ValueError as exc:
                    st.problem = str(exc)

    def _garbled(self, head: str) -> None:
        # a torn line usually still shows whose it was
        m = re.search(r'"n":"([^"]*)","t":(null|"([^"]*)")', head)
        if m:
            key = (m.group(1), m.group(3))
            self.states.setdefault(key, _State()).garbled += 1
        else:
            self.garbled_unattributed += 1

    def finish(self, timed_out: bool = False, hints: Optional["Hints"] = None) -> Collected:
        out = Collected(stray_records=self.stray)
        for (node, task), st in sorted(self.states.items(), key=lambda kv: (kv[0][0], _task_order(kv[0][1]))):
            if st.done is not None:
                out.members.append(st.done)
            elif st.problem:
                out.missing.append(Missing(node, task, "garbled", f"a report arrived, but {st.problem}"))
            else:
                out.missing.append(_why(node, task, st, timed_out, hints))
        return out


def _task_order(task: Optional[str]) -> tuple[int, str]:
    return (int(task), "") if task is not None and task.isdigit() else (-1, task or "")


def _why(node: str, task: Optional[str], st: _State, timed_out: bool, hints: Optional["Hints"]) -> Missing:
    hint = hints.for_member(node, task) if hints else None
    also = f" (launcher: {hint})" if hint else ""
    if st.error is not None:
        reason = "timeout" if "SIGTERM" in st.error and timed_out else "error"
        return Missing(node, task, reason, st.error + also)
    total, parts = max(st.sent.values(), key=lambda tp: len(tp[1]), default=(0, {}))
    got = f"{len(parts)} of {total} report parts" if total else "no report parts"
    torn = f", {st.garbled} torn line(s)" if st.garbled else ""
    if timed_out and not (hints and hints.died_before_stop(node, task)):
        return Missing(node, task, "timeout", f"still running when the fleet timeout ended the launcher; {got}"
                       f"{torn}{also}")
    if st.garbled and not total:
        return Missing(node, task, "garbled", f"only torn lines arrived ({st.garbled}){also}")
    return Missing(node, task, "crash", f"started, then its output ended ({got}{torn}): the process died "
                   f"(killed, out of memory, node lost){also}")


class Hints:
    """The launcher's own stderr lines, to say why a member is missing (`srun: error: node17: task 3: ...`)."""

    def __init__(self, lines: Iterable[str], stopped_at: Optional[int] = None) -> None:
        self.lines = [ln.rstrip() for ln in lines]  # blank ones too: stopped_at counts them
        # lines from this index on came after envdoctor stopped the launcher (its timeout): what they
        # say (srun: "tasks 1,3: Killed") is the stop itself, not a task dying on its own
        self.stopped_at = len(self.lines) if stopped_at is None else stopped_at

    def _about(self, node: str, task: Optional[str], lines: list[str], strict: bool = False) -> Optional[str]:
        word = re.compile(rf"(?<![\w.-]){re.escape(node)}(?![\w-])") if node else None
        about_node = [ln for ln in lines if word and word.search(ln)]
        if task is not None:
            about_task = [ln for ln in about_node if re.search(rf"\btasks? [\d,-]*\b{re.escape(task)}\b", ln)]
            if about_task:
                return about_task[-1][:300]
            if strict:  # a line about another task of the same node says nothing about this one
                return None
        return about_node[-1][:300] if about_node else None

    def for_member(self, node: str, task: Optional[str]) -> Optional[str]:
        return self._about(node, task, self.lines)

    def died_before_stop(self, node: str, task: Optional[str]) -> bool:
        hint = self._about(node, task, self.lines[:self.stopped_at], strict=True)
        return bool(hint and _DIED.search(hint))

    def last(self) -> Optional[str]:
        said = [ln for ln in self.lines if ln.strip()]
        return said[-1][:300] if said else None


def expected_missing(collected: Collected, hosts: list[str], sizes: set[int], hints: Hints,
                     launcher_failed: str, timed_out: bool = False) -> None:
    """Members that never said hello: named by -w/--expect hosts, or counted from the tasks' own size."""
    seen_nodes = {m.node for m in collected.members} | {m.node for m in collected.missing}
    for host in hosts:
        if host not in seen_nodes:
            hint = hints.for_member(host, None) or launcher_failed
            collected.missing.append(Missing(host, None, "timeout" if timed_out else "launcher_error",
                                             f"never started (no output at all){': ' + hint if hint else ''}"))
    if sizes and not hosts:
        size = max(sizes)
        seen_tasks = {m.task for m in collected.members} | {m.task for m in collected.missing}
        for t in range(size):
            if str(t) not in seen_tasks:
                hint = launcher_failed or hints.last() or ""
                collected.missing.append(Missing("?", str(t), "timeout" if timed_out else "launcher_error",
                                                 f"task {t} of {size} never started{': ' + hint if hint else ''}"))


def _pump(stream: IO[bytes], sink: Any) -> None:
    for raw in iter(stream.readline, b""):
        sink(raw.decode("utf-8", "replace"))


def run_launcher(argv: list[str], run: str, fleet_timeout: Optional[float], hosts: list[str],
                 progress: Optional[Callable[[int, int], None]] = None) -> Collected:
    """Run LAUNCHER… once; records are read while it runs; the launcher's stderr is kept for the reasons.

    progress(reported, started) is called whenever a member starts or completes its report."""
    asm = Assembler(run)
    stderr_tail: deque[str] = deque(maxlen=2000)
    lock = threading.Lock()
    counts = (0, 0)

    def on_out(line: str) -> None:
        nonlocal counts
        with lock:
            asm.feed(line, "launcher")
            if progress is not None and record.MARK in line:
                now = (asm.completed, len(asm.states))
                if now != counts:
                    counts = now
                    progress(*now)

    stopped_at: list[int] = []
    received = [0]

    def on_err(line: str) -> None:
        received[0] += 1
        stderr_tail.append(line)

    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except FileNotFoundError:
        raise UsageError(f"launcher {argv[0]!r} not found") from None
    except PermissionError:
        raise UsageError(f"launcher {argv[0]!r} is not executable") from None
    assert proc.stdout is not None and proc.stderr is not None
    threads = [threading.Thread(target=_pump, args=(proc.stdout, on_out), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, on_err), daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=fleet_timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stopped_at.append(received[0])
        _stop(proc)
    except KeyboardInterrupt:
        _stop(proc)
        raise
    for t in threads:
        t.join(timeout=5)
    seconds = time.monotonic() - start
    dropped = received[0] - len(stderr_tail)  # the deque keeps the last lines only
    hints = Hints(stderr_tail, max(stopped_at[0] - dropped, 0) if stopped_at else None)
    collected = asm.finish(timed_out, hints)
    code = proc.returncode
    failed = ""
    if timed_out:
        failed = f"the launcher ran longer than --fleet-timeout {fleet_timeout:g}s and was stopped"
    elif code != 0:
        failed = f"the launcher exited with {_exit_text(code)}" + (f": {hints.last()}" if hints.last() else "")
    expected_missing(collected, hosts, asm.sizes, hints, failed, timed_out)
    collected.launcher = {"command": list(argv), "exit_code": code, "seconds": round(seconds, 3),
                          "timed_out": timed_out, "stderr_tail": [ln.rstrip() for ln in list(stderr_tail)[-20:]],
                          "unattributed_torn_lines": asm.garbled_unattributed}
    return collected


def _exit_text(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _stop(proc: subprocess.Popen) -> None:
    # the launcher forwards SIGTERM to its tasks (srun, pdsh, mpirun do); SIGKILL if it does not go
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _files(inputs: list[str]) -> list[tuple[str, Optional[Path]]]:
    out: list[tuple[str, Optional[Path]]] = []
    for item in inputs:
        if item == "-":
            out.append(("-", None))
            continue
        p = Path(item)
        if p.is_dir():
            out.extend((str(f), f) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            out.append((item, p))
        else:
            raise UsageError(f"{item}: no such file or directory")
    return out


def _read(name: str, path: Optional[Path], stdin: Optional[IO[str]]) -> Iterable[str]:
    if path is None:
        yield from (stdin or sys.stdin)
        return
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            yield from f
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def from_files(inputs: list[str], stdin: Optional[IO[str]] = None) -> Collected:
    """Reports gathered any other way: record logs, `check --format json` reports, directories, `-`.

    Read line by line: a log's records are reduced as they complete; a file without records is
    kept (up to a report's size limit) to be read as one JSON report."""
    import json

    from envdoctor.report_io import MAX_REPORT_BYTES

    asm = Assembler(None)
    plain: list[Member] = []
    bad: list[Missing] = []
    for name, path in _files(inputs):
        kept: list[str] = []
        size, records = 0, False
        for line in _read(name, path, stdin):
            if record.MARK in line:
                records = True
                kept = []
            if records:
                asm.feed(line, name)
            elif size <= MAX_REPORT_BYTES:
                kept.append(line)
                size += len(line)
        if records:
            continue
        try:
            data = json.loads("".join(kept)) if size <= MAX_REPORT_BYTES else None
        except ValueError:
            data = None
        stem = Path(name).stem
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("envdoctor.report/"):
            bad.append(Missing(stem, None, "not_a_report",
                               f"{name} is neither an envdoctor report nor launcher output with fleet records"))
            continue
        # envdoctor <= 0.1.0 wrote the tag under extra
        tag = data.get("fleet") or (data.get("extra") or {}).get("fleet") or {}
        tag = tag if isinstance(tag, dict) else {}
        node = str(tag["node"]) if isinstance(tag.get("node"), str) else stem
        task = tag.get("task")
        plain.append(member(node, None if task is None else str(task), data, name))
    collected = asm.finish()
    collected.members.extend(plain)
    collected.missing.extend(bad)
    if asm.garbled_unattributed:
        collected.launcher = {"unattributed_torn_lines": asm.garbled_unattributed}
    return collected
