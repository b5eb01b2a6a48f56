"""The one pipeline: resolve the target once, probe once, check once (DESIGN section 2).

`check`, `diff`'s fresh side, `fix` (its before-state, and its verification after installing) and the
fleet's member all come through here; so do `fix --undo` / `--recover`, which need only the target and
its layout (no probe). Commands parse options and render; what runs, in which order, is decided here.

The target's processes (`import torch` ...) are the critical path, so they start first; what runs after
them (the rule tables, the checks, binary forensics, redaction, the renderers and rich) is loaded by a
thread while they run, and envdoctor's own start-up is not added to their time. (So a bad --rules file is
reported, exit 2, once the probe is done.)
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from envdoctor.errors import UsageError
from envdoctor.facts import LoadResult, Report
from envdoctor.options import CheckOptions
from envdoctor.probe import Holder, Target, TargetInfo, collect, collect_verified, resolve_target, target_layout

# imported while the probes run, what is needed first, first (binary forensics only after a full probe)
AFTER_PROBE = ("envdoctor.checks", "envdoctor.classify", "envdoctor.fix.lock", "envdoctor.fix.recover",
               "envdoctor.redact")
# before all: the main thread reads the host's memory with psutil as soon as the static probe is back
FIRST = ("psutil",)
# the renderer of each format: only the one asked for is imported (rich only for text and markdown)
RENDERERS = {"text": ("envdoctor.render.text",), "json": ("envdoctor.render.json_",),
             "markdown": ("envdoctor.render.markdown",)}
ALL_RENDERERS = tuple(m for ms in RENDERERS.values() for m in ms)


@dataclass
class Settings:
    """How to probe and check (the same for the before-state and the verification of one fix)."""

    quick: bool = False
    timeout: float = 60.0
    rules_dirs: list[str] = field(default_factory=list)
    select: Optional[list[str]] = None
    ignore: Optional[list[str]] = None
    progress: bool = False  # a spinner on stderr (only ever on a terminal)
    fork: Optional[bool] = None  # None: fork after `import torch` where that is safe (Linux)
    renderers: tuple[str, ...] = ALL_RENDERERS  # imported while the probes run: the formats to be written


@dataclass
class Diagnosis:
    """One pass: the facts with their findings, the rule tables they were checked against, and (for fix's
    verification) how each verify statement went, run in the same probe."""

    target: Target
    report: Report
    tables: Any  # rules.Tables
    verified: dict[str, LoadResult] = field(default_factory=dict)


def target(python: Optional[str]) -> Target:
    """Resolve the target once (a bad --python is a one-line usage error here); every stage gets this one."""
    return resolve_target(python)


def layout(tgt: Target, timeout: float) -> TargetInfo:
    """The target's prefix, install paths and markers: what fix needs before its first probe (the lock)."""
    return target_layout(tgt, timeout)


def _after_probe(quick: bool, rules_dirs: list[str], renderers: tuple[str, ...], out: dict[str, Any],
                 preload: Sequence[str] = ()) -> None:
    for name in FIRST:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - its user falls back without it (probe/host.py)
            pass
    try:
        from envdoctor.rules import load_tables

        out["tables"] = load_tables(rules_dirs)
    except Exception as exc:  # noqa: BLE001 - raised again in the main thread (a bad --rules file: exit 2)
        out["error"] = exc
        return
    try:
        from envdoctor.checks import load_all

        load_all()
        for name in AFTER_PROBE + renderers + (() if quick else ("envdoctor.binary",)) + tuple(preload):
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the main thread imports it again and reports the error its own way
        pass


def start_imports(quick: bool = False, rules_dirs: Optional[list[str]] = None,
                  renderers: tuple[str, ...] = ALL_RENDERERS, start: bool = True, preload: Sequence[str] = ()
                  ) -> tuple[threading.Thread, dict[str, Any]]:
    """Load the rule tables and import what comes after the probe (and the caller's `preload` modules), in a
    thread: (thread, its results). `start=False`: the caller starts the thread (when the probe processes are
    on their way)."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=_after_probe, args=(quick, list(rules_dirs or []), renderers, out,
                                                         tuple(preload)),
                              name="envdoctor-imports", daemon=True)
    if start:
        thread.start()
    return thread, out


def check_selectors(option: str, patterns: Optional[list[str]]) -> None:
    """An id or prefix that matches no rule is an error, not a silent no-op: `--select ED3O1` (a typo)
    would otherwise run no check at all and exit 0, and a CI gate on `check` would always pass."""
    if not any(p.strip() for p in patterns or []):
        return  # nothing to validate: the checks are imported later, while the probes run
    from envdoctor.checks import load_all

    ids = sorted(load_all().rules)
    for p in patterns or []:
        want = p.strip().upper()
        if want and not any(i.startswith(want) for i in ids):
            raise UsageError(f"{option} {p.strip()}: no rule id starts with it (known: {ids[0]} .. {ids[-1]}; "
                             "see `envdoctor rules`)")


def diagnose(tgt: Target, settings: Settings, fix_recovery: Optional[dict[str, Any]] = None,
             read_pending: bool = True, verify: Sequence[str] = (), preload: Sequence[str] = (),
             hold: Optional[Holder] = None) -> Diagnosis:
    """probe -> facts -> checks -> findings, once. `verify`: statements run in the same probe (fix's
    verification). `fix_recovery`: what the calling fix recovered first (for ED601). `read_pending=False`:
    the caller's own fix is the pending one (not an ED601). `preload`: modules the caller needs next,
    imported while the probe runs. `hold`: fix's before-probe keeps its `import torch` there, and its
    verification forks from it (probe/held.py)."""
    if settings.progress:  # before the thread, which imports rich too: two threads importing one package's
        from rich.console import Console  # modules in different orders can deadlock
    # started once the target is resolved and its processes are starting: resolving it (reading the
    # interpreter's file) and starting them are the critical path, the thread's imports would slow them
    imports, loaded = start_imports(settings.quick, settings.rules_dirs, settings.renderers, start=False,
                                    preload=preload)
    try:
        if not settings.progress:
            report, verified = collect_verified(tgt, verify, quick=settings.quick, timeout=settings.timeout,
                                                fork=settings.fork, started=imports.start, hold=hold)
        else:
            # a spinner on stderr, only on a terminal; its text follows the probes as they finish
            with Console(stderr=True).status("probing: starting isolated imports of torch, torchvision, mmcv") \
                    as status:
                report, verified = collect_verified(tgt, verify, quick=settings.quick, timeout=settings.timeout,
                                                    fork=settings.fork, started=imports.start, hold=hold,
                                                    progress=lambda text: status.update(f"probing: {text}"))
    finally:
        if imports.ident is not None:
            imports.join()  # never two threads importing one module; none left importing at exit
    if imports.ident is None:  # not started by the probe (it failed before): load what comes next now
        imports.start()
        imports.join()
    if "error" in loaded:
        raise loaded["error"]
    tables = loaded["tables"]
    from envdoctor.checks import run_checks
    from envdoctor.classify import classified
    from envdoctor.fix.lock import state_dir
    from envdoctor.fix.recover import pending_report

    # an interrupted fix, for ED601: read only (check never recovers, never writes to the target)
    pending = (pending_report(state_dir(report.python.prefix), not settings.quick)
               if read_pending and report.python.prefix else None)
    facts = replace(classified(report, tables), fix_pending=pending or None, fix_recovery=fix_recovery)
    return Diagnosis(tgt, replace(facts, findings=tuple(run_checks(facts, tables, settings.select,
                                                                   settings.ignore))), tables, verified)


def exit_code(report: Report) -> int:
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def check(opts: CheckOptions, python: Optional[str] = None, progress: bool = False) -> Report:
    """`envdoctor check`'s report: selectors validated, one diagnosis, redacted unless --no-redact.
    `python` overrides opts.python (the fleet's member passes the node's interpreter)."""
    check_selectors("--select", opts.select)
    check_selectors("--ignore", opts.ignore)
    settings = Settings(quick=opts.quick, timeout=opts.timeout, rules_dirs=list(opts.rules_dirs),
                        select=opts.select, ignore=opts.ignore, progress=progress,
                        fork=False if opts.no_fork else None, renderers=RENDERERS.get(opts.fmt, ALL_RENDERERS))
    report = diagnose(target(python if python is not None else opts.python), settings).report
    if not opts.no_redact:
        from envdoctor.redact import redact_report

        report = redact_report(report)
    return report


def fresh(python: Optional[str], timeout: float, rules_dirs: list[str]) -> Report:
    """diff's default B: a fresh diagnosis of the current (or --python) environment."""
    settings = Settings(timeout=timeout, rules_dirs=list(rules_dirs), progress=sys.stderr.isatty())
    return diagnose(target(python), settings).report


def static_facts(python: Optional[str], timeout: float = 60.0) -> Report:
    """The target's static facts only (no import, no check): inspect's context for a file's libraries."""
    return collect(target(python), quick=True, timeout=timeout)
