"""One `envdoctor fix` run, in order: the target (resolved once), its layout and the lock (only when
something may change), recovery of an interrupted fix, the before-state (one pass of the pipeline), the
plan, the transaction, and its verification (one more pass of the pipeline, the plan's verify statements
run inside it).

Exit codes: 0 fix verified / nothing to do / dry run printed / recovered; 1 the fix failed and was
rolled back (or nothing could be applied, undo refused, or a recovery could not finish: a conflict
to decide, a read-only directory); 2 usage or internal error; 130 interrupted (after rolling back).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from envdoctor import pipeline
from envdoctor.errors import UsageError
from envdoctor.facts import LoadResult, Report
from envdoctor.options import FixOptions
from envdoctor.probe import Holder, Target

if TYPE_CHECKING:
    from envdoctor.fix.lock import EnvLock

Echo = Callable[[str], None]
# what planning and applying need, imported by the pipeline's thread while the before-probe runs (not
# before it: the target's processes are the critical path, as for `check`)
AFTER_PROBE = ("envdoctor.fix.plan", "envdoctor.fix.apply", "envdoctor.fix.compat_install",
               "envdoctor.fix.user_site", "envdoctor.render.json_")


@dataclass
class Outcome:
    code: int
    report: Optional[Report] = None  # the report --format json carries (the verified one, else the before)
    fix: Optional[dict[str, Any]] = None  # plan, applied, result: the report's `fix` field


class Session:
    """What every stage of one fix run shares: the options, the target, where output goes."""

    def __init__(self, opts: FixOptions, pins: dict[str, str], out: Any, redactor: Any = None) -> None:
        self.opts = opts
        self.pins = pins  # by the name as given; normalised when the plan is made
        self.out = out
        self.redactor = redactor
        self.target: Target = pipeline.target(opts.python)  # the one resolution; a bad --python is exit 2 here
        self.settings = pipeline.Settings(timeout=opts.timeout, rules_dirs=list(opts.rules_dirs),
                                          progress=sys.stderr.isatty())
        self.hold: Optional[Holder] = None  # --apply: the before-probe, held for the verification

    def echo(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def _on_wait(self, holder: str) -> None:
        self.echo(f"envdoctor: waiting for another envdoctor fix on this environment ({holder})")

    def _recover(self, state: Any) -> list[dict[str, Any]]:
        """Recover what an interrupted fix left, saying what first. The caller holds the lock."""
        from envdoctor.render.fix import recovery_text
        from envdoctor.fix.undo import recover_locked

        recs = recover_locked(state, self.echo, self.opts.on_conflict)
        for rec in recs:
            self.out.write(recovery_text(rec))
        return recs

    def run(self) -> Outcome:
        opts = self.opts
        if not (opts.apply or opts.undo or opts.recover):
            return self._plan_only()
        from envdoctor.fix.lock import DEFAULT_WAIT, acquire_or_fail, state_dir
        from envdoctor.fix.recover import DONE
        # the lock is named by the prefix, and taken before probing: a second fix waits, then plans from the
        # environment the first one left. The layout (one light process) says the prefix and pip's paths.
        info = pipeline.layout(self.target, opts.timeout)
        if self.redactor is not None:
            self.redactor.add_target(info.prefix)
        state = state_dir(info.prefix)
        if opts.recover:
            return self._recover_only(state, info.prefix)
        if opts.undo:
            return self._undo(state, info.prefix)
        lock = acquire_or_fail(state, DEFAULT_WAIT, self._on_wait)
        from envdoctor.fix.apply import Interrupted

        def on_sigterm(signum: int, frame: object) -> None:
            raise Interrupted()

        previous_term: Any = None
        try:
            previous_term = signal.signal(signal.SIGTERM, on_sigterm)  # rolled back like Ctrl-C
        except ValueError:  # not the main thread
            pass
        # the before-probe's `import torch` waits for the verification, which forks from it (probe/held.py)
        self.hold = Holder()
        try:
            recs = self._recover(state)
            if not all(r["status"] in DONE for r in recs):
                self.echo("Nothing applied: the interrupted fix above must be recovered first.")
                return Outcome(1)
            before = pipeline.diagnose(self.target, self.settings, fix_recovery=recs[-1] if recs else None,
                                       preload=AFTER_PROBE, hold=self.hold)
            return self._plan_and_apply(before, lock, info)
        finally:
            self.hold.close()
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            lock.release()

    def _plan_only(self) -> Outcome:
        before = pipeline.diagnose(self.target, self.settings, preload=AFTER_PROBE)
        if self.redactor is not None and before.report.python.prefix:
            self.redactor.add_target(before.report.python.prefix)
        return self._plan_and_apply(before, None, None)

    def _recover_only(self, state: Any, prefix: str) -> Outcome:
        from envdoctor.fix.lock import DEFAULT_WAIT, acquire_or_fail
        from envdoctor.fix.recover import DONE, pending_report

        if pending_report(state) is None:  # reads only: no state directory is created to say so
            self.echo(f"envdoctor: nothing to recover: no interrupted envdoctor fix on this environment ({prefix})")
            return Outcome(0)
        lock = acquire_or_fail(state, DEFAULT_WAIT, self._on_wait)
        try:
            return Outcome(0 if all(r["status"] in DONE for r in self._recover(state)) else 1)
        finally:
            lock.release()

    def _undo(self, state: Any, prefix: str) -> Outcome:
        from envdoctor.fix.lock import DEFAULT_WAIT, acquire_or_fail
        from envdoctor.fix.recover import DONE

        if not state.is_dir():  # do not create a state directory just to say there is nothing in it
            raise UsageError(f"nothing to undo: envdoctor has not changed this environment ({prefix})")
        lock = acquire_or_fail(state, DEFAULT_WAIT, self._on_wait)
        try:
            if not all(r["status"] in DONE for r in self._recover(state)):
                self.echo("Result: undo_refused: an interrupted fix must be recovered first (see above)")
                return Outcome(1)
            from envdoctor.fix.undo import undo_last

            res = undo_last(state, self.echo)
        finally:
            lock.release()
        self.echo(f"Result: {res.status}: {res.message}")
        return Outcome(0 if res.status == "undone" else 1)

    def _plan_and_apply(self, before: pipeline.Diagnosis, lock: "Optional[EnvLock]", info: Any) -> Outcome:
        from envdoctor.fix.compat_install import unavailable_reason
        from envdoctor.fix.plan import PlanOptions, make_plan
        from envdoctor.render.fix import pending_text, plan_text, summary_text
        from envdoctor.fix.user_site import site_writable
        from envdoctor.fix.wheels import norm_name

        opts = self.opts
        self.pins = {norm_name(k): v for k, v in self.pins.items()}
        report = before.report
        if self.redactor is not None:
            from envdoctor.redact import redact_report

            redact_report(report, self.redactor)  # learns secrets that only the whole facts show (a key's lines)
        if report.fix_pending is not None:  # a dry run recovers nothing; it says what --apply would do first
            self.out.write(pending_text(report.fix_pending))
        build_choice = None
        if opts.strategy == "build":
            from envdoctor.build.choice import gather as gather_build

            pin = next((self.pins[d] for d in ("mmcv", "mmcv-full") if d in self.pins), None)
            build_choice = gather_build(report, before.tables, cpu=opts.cpu, source=opts.source, version=pin)
        plan_opts = PlanOptions(strategy=opts.strategy, index_url=opts.index_url,
                                allow_torch_change=opts.allow_torch_change, pins=self.pins,
                                compat_unavailable=unavailable_reason(), build=build_choice,
                                site_writable=site_writable(report.python.site_packages))
        plan = make_plan(report, before.tables, plan_opts)
        self.out.write(plan_text(plan, applying=opts.apply))
        fix: dict[str, Any] = {"plan": plan.to_dict(), "applied": False}
        # a build that cannot start is an error even in a dry run: the plan says what to install first
        code = 1 if opts.strategy == "build" and plan.problems and not plan.runnable else 0
        after = None
        if plan.problems and opts.apply:
            if not plan.runnable:
                fix["result"] = {"status": "not_applied", "message": "no action envdoctor can carry out"}
                self.echo("Nothing applied: no action envdoctor can carry out (see the plan above).")
                code = 1
            elif not opts.yes and not _confirm():
                fix["result"] = {"status": "declined", "message": "not confirmed"}
                self.echo("Nothing changed.")
                code = 1
            else:
                assert lock is not None and info is not None
                from envdoctor.fix.apply import apply_plan

                # pip runs as the interpreter the probe saw (sys.executable of the target)
                info = dataclasses.replace(info, python=report.python.executable or info.python)

                def verification(statements: list[str]) -> tuple[Report, dict[str, LoadResult]]:
                    # this fix's own journal is the pending one now: not an ED601
                    after = pipeline.diagnose(self.target, dataclasses.replace(self.settings, progress=False),
                                              read_pending=False, verify=statements, hold=self.hold)
                    return after.report, after.verified

                result, after = apply_plan(plan, report, info, lock, allow_torch=opts.allow_torch_change,
                                           probe=verification, timeout=opts.timeout, echo=self.echo,
                                           warm=self.hold.warm if self.hold is not None else None)
                fix["applied"] = True
                fix["result"] = result.to_dict()
                self.out.write(summary_text(fix["result"], report, after))
                code = 0 if result.status == "verified" else 1
        final = after if after is not None and fix.get("result", {}).get("status") == "verified" else report
        final = dataclasses.replace(final, fix=fix)
        return Outcome(code, final, fix)


def _confirm() -> bool:
    if not sys.stdin.isatty():
        raise UsageError("--apply asks for confirmation; pass --yes when not running on a terminal")
    answer = input("Carry out this plan? [y/N] ").strip().lower()
    return answer in ("y", "yes")
