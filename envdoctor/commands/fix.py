"""`envdoctor fix`: plan (dry run by default), `--apply` transactionally, `--undo` the last fix,
`--recover` what an interrupted one left (also done, after saying so, by any `--apply` / `--undo`).

Exit codes: 0 fix verified / nothing to do / dry run printed / recovered; 1 the fix failed and was
rolled back (or nothing could be applied, undo refused, or a recovery could not finish: a conflict
to decide, a read-only directory); 2 usage or internal error; 130 interrupted (after rolling back).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from typing import Any, Optional

from envdoctor.build.choice import gather as gather_build
from envdoctor.commands.check import check_output_path, diagnose, emit
from envdoctor.errors import UsageError
from envdoctor.fix.apply import Interrupted, apply_plan, prefix_of
from envdoctor.fix.undo import recover_locked, undo_last
from envdoctor.fix.compat_install import unavailable_reason
from envdoctor.fix.lock import DEFAULT_WAIT, EnvLock, acquire_or_fail, state_dir
from envdoctor.fix.user_site import site_writable
from envdoctor.fix.pip_runner import target_info
from envdoctor.fix.plan import STRATEGIES, PlanOptions, make_plan
from envdoctor.fix.recover import CONFLICT_CHOICES, DONE, pending_report
from envdoctor.render.fix import pending_text, plan_text, recovery_text, summary_text
from envdoctor.fix.wheels import norm_name
from envdoctor.probe import collect
from envdoctor.probe.target import resolve
from envdoctor.redact import Redactor, redact_report
from envdoctor.render.json_ import render_json
from envdoctor.render.output import RedactingWriter, StdoutWriter
from envdoctor.rules import load_tables

FORMATS = ("text", "json")


def parse_pins(pins: list[str]) -> dict[str, str]:
    out = {}
    for p in pins:
        name, sep, version = p.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise UsageError(f"--pin {p}: write NAME==VERSION, e.g. --pin mmcv==2.1.0")
        out[norm_name(name.strip())] = version.strip()
    return out


def _confirm() -> bool:
    if not sys.stdin.isatty():
        raise UsageError("--apply asks for confirmation; pass --yes when not running on a terminal")
    answer = input("Carry out this plan? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _recover(state: Any, echo: Any, out: Any, on_conflict: Optional[str]) -> list[dict[str, Any]]:
    """Recover what an interrupted fix left, saying what first. The caller holds the lock."""
    recs = recover_locked(state, echo, on_conflict)
    for rec in recs:
        out.write(recovery_text(rec))
    return recs


def _done(recs: list[dict[str, Any]]) -> bool:
    return all(r["status"] in DONE for r in recs)


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


def run(python: Optional[str], apply: bool, strategy: str, index_url: Optional[str], allow_torch_change: bool,
        yes: bool, undo: bool, pins: list[str], rules_dirs: list[str], fmt: str, output: Optional[str],
        timeout: float, recover: bool = False, on_conflict: Optional[str] = None, no_redact: bool = False,
        cpu: bool = False, source: Optional[str] = None) -> int:
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy}: choose one of {', '.join(STRATEGIES)}")
    if (cpu or source) and strategy != "build":
        raise UsageError(f"{'--cpu' if cpu else '--source'} belongs to --strategy build")
    if source is not None and not os.path.exists(os.path.expanduser(source)):
        raise UsageError(f"--source {source}: no such file or directory (a source checkout or an sdist)")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if on_conflict is not None and on_conflict not in CONFLICT_CHOICES:
        raise UsageError(f"--on-conflict {on_conflict}: choose one of {', '.join(CONFLICT_CHOICES)}")
    if sum((recover, undo)) > 1:
        raise UsageError("--recover and --undo: give one of them")
    pinned = parse_pins(pins)
    check_output_path(output)
    # every line fix prints is redacted like check's report (--no-redact keeps raw values)
    redactor = None if no_redact else Redactor()
    # StdoutWriter: undecodable bytes as \udcXX, a full disk as one line (exit 2)
    out: Any = StdoutWriter(sys.stderr if fmt == "json" else sys.stdout)
    if redactor is not None:
        out = RedactingWriter(out, redactor.text)

    def echo(msg: str) -> None:
        print(msg, file=out, flush=True)

    resolve(python)  # a bad --python is a one-line usage error here
    prefix = prefix_of(python)
    if prefix is None:
        collect(python, quick=True)  # raises the probe's own clear message
        raise UsageError(f"--python {python}: cannot ask the interpreter for its prefix")
    if redactor is not None:
        redactor.add_target(prefix)
    state = state_dir(prefix)
    on_wait = lambda holder: echo(f"envdoctor: waiting for another envdoctor fix on this environment ({holder})")  # noqa: E731

    if recover:
        if pending_report(state) is None:  # reads only: no state directory is created to say so
            echo(f"envdoctor: nothing to recover: no interrupted envdoctor fix on this environment ({prefix})")
            return 0
        rec_lock = acquire_or_fail(state, DEFAULT_WAIT, on_wait)
        try:
            return 0 if _done(_recover(state, echo, out, on_conflict)) else 1
        finally:
            rec_lock.release()

    if undo:
        if not state.is_dir():  # do not create a state directory just to say there is nothing in it
            raise UsageError(f"nothing to undo: envdoctor has not changed this environment ({prefix})")
        undo_lock = acquire_or_fail(state, DEFAULT_WAIT, on_wait)
        try:
            if not _done(_recover(state, echo, out, on_conflict)):
                echo("Result: undo_refused: an interrupted fix must be recovered first (see above)")
                return 1
            res = undo_last(state, echo)
        finally:
            undo_lock.release()
        echo(f"Result: {res.status}: {res.message}")
        return 0 if res.status == "undone" else 1

    lock: Optional[EnvLock] = None
    previous_term: Any = None
    if apply:
        # taken before probing: a second fix waits, then plans from the environment the first one left
        lock = acquire_or_fail(state, DEFAULT_WAIT, on_wait)
        try:
            previous_term = signal.signal(signal.SIGTERM, _on_sigterm)  # rolled back like Ctrl-C
        except ValueError:  # not the main thread
            pass
    try:
        recs = _recover(state, echo, out, on_conflict) if lock is not None else []
        if not _done(recs):
            echo("Nothing applied: the interrupted fix above must be recovered first.")
            return 1
        report = diagnose(python, False, timeout, rules_dirs, None, None, show_progress=sys.stderr.isatty(),
                          fix_recovery=recs[-1] if recs else None)
        if redactor is not None:
            redact_report(report, redactor)  # learns secrets that only the whole facts show (a key's lines)
        if report.fix_pending is not None:  # a dry run recovers nothing; it says what --apply would do first
            out.write(pending_text(report.fix_pending))
        tables = load_tables(rules_dirs)
        build_choice = None
        if strategy == "build":
            pin = next((pinned[d] for d in ("mmcv", "mmcv-full") if d in pinned), None)
            build_choice = gather_build(report, tables, cpu=cpu, source=source, version=pin)
        opts = PlanOptions(strategy=strategy, index_url=index_url, allow_torch_change=allow_torch_change,
                           pins=pinned, compat_unavailable=unavailable_reason(), build=build_choice,
                           site_writable=site_writable(report.python.site_packages))
        plan = make_plan(report, tables, opts)
        out.write(plan_text(plan, applying=apply))
        fix: dict[str, Any] = {"plan": plan.to_dict(), "applied": False}
        # a build that cannot start is an error even in a dry run: the plan says what to install first
        code = 1 if strategy == "build" and plan.problems and not plan.runnable else 0
        after = None
        if plan.problems and apply:
            if not plan.runnable:
                fix["result"] = {"status": "not_applied", "message": "no action envdoctor can carry out"}
                echo("Nothing applied: no action envdoctor can carry out (see the plan above).")
                code = 1
            elif not yes and not _confirm():
                fix["result"] = {"status": "declined", "message": "not confirmed"}
                echo("Nothing changed.")
                code = 1
            else:
                assert lock is not None
                info = target_info(report.python.executable, timeout)

                def probe():  # this fix's own journal is the pending one now: not an ED601
                    return diagnose(python, False, timeout, rules_dirs, None, None, read_pending=False)

                result, after = apply_plan(plan, report, info, lock, allow_torch=allow_torch_change, probe=probe,
                                           timeout=timeout, echo=echo)
                fix["applied"] = True
                fix["result"] = result.to_dict()
                out.write(summary_text(fix["result"], report, after))
                code = 0 if result.status == "verified" else 1
        final = after if after is not None and fix.get("result", {}).get("status") == "verified" else report
        final = dataclasses.replace(final, fix=fix)
        if fmt == "json":
            emit(render_json(redact_report(final, redactor) if redactor is not None else final), output)
        elif output:
            emit(json.dumps(redactor.value(fix) if redactor is not None else fix, indent=1, default=str,
                            ensure_ascii=False), output)
        return code
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if lock is not None:
            lock.release()
