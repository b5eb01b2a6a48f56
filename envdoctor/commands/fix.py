"""`envdoctor fix`: options checked here, the run itself in envdoctor.fix.session (plan, dry run by default;
`--apply` transactionally, `--undo` the last fix, `--recover` what an interrupted one left), the result
rendered here.

Exit codes: 0 fix verified / nothing to do / dry run printed / recovered; 1 the fix failed and was
rolled back (or nothing could be applied, undo refused, or a recovery could not finish); 2 usage or
internal error; 130 interrupted (after rolling back).

Only what checks the options is imported up front (as for `check`, the target's processes are the critical
path); the fix machinery is imported by the pipeline's thread while the probe runs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from envdoctor.errors import UsageError
from envdoctor.options import FIX_STRATEGIES, ON_CONFLICT, FixOptions
from envdoctor.render.formats import check_output_path
from envdoctor.render.output import RedactingWriter, StdoutWriter, emit

FORMATS = ("text", "json")


def parse_pins(pins: list[str]) -> dict[str, str]:
    """NAME==VERSION by NAME as given (the session normalises the names, with the plan's own rule)."""
    out = {}
    for p in pins:
        name, sep, version = p.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise UsageError(f"--pin {p}: write NAME==VERSION, e.g. --pin mmcv==2.1.0")
        out[name.strip()] = version.strip()
    return out


def check_options(opts: FixOptions) -> dict[str, str]:
    """Every option error is exit 2 before anything runs; returns the pins by distribution."""
    if opts.strategy not in FIX_STRATEGIES:
        raise UsageError(f"--strategy {opts.strategy}: choose one of {', '.join(FIX_STRATEGIES)}")
    if (opts.cpu or opts.source) and opts.strategy != "build":
        raise UsageError(f"{'--cpu' if opts.cpu else '--source'} belongs to --strategy build")
    if opts.source is not None and not os.path.exists(os.path.expanduser(opts.source)):
        raise UsageError(f"--source {opts.source}: no such file or directory (a source checkout or an sdist)")
    if opts.fmt not in FORMATS:
        raise UsageError(f"--format {opts.fmt}: choose one of {', '.join(FORMATS)}")
    if opts.on_conflict is not None and opts.on_conflict not in ON_CONFLICT:
        raise UsageError(f"--on-conflict {opts.on_conflict}: choose one of {', '.join(ON_CONFLICT)}")
    if opts.recover and opts.undo:
        raise UsageError("--recover and --undo: give one of them")
    pins = parse_pins(opts.pins)
    check_output_path(opts.output)
    return pins


def run(opts: FixOptions) -> int:
    pins = check_options(opts)
    from envdoctor.fix.session import Session
    from envdoctor.redact import Redactor, redact_report

    # every line fix prints is redacted like check's report (--no-redact keeps raw values)
    redactor = None if opts.no_redact else Redactor()
    # StdoutWriter: undecodable bytes as \udcXX, a full disk as one line (exit 2)
    out: Any = StdoutWriter(sys.stderr if opts.fmt == "json" else sys.stdout)
    if redactor is not None:
        out = RedactingWriter(out, redactor.text)
    outcome = Session(opts, pins, out, redactor).run()
    if outcome.report is not None and outcome.fix is not None:
        if opts.fmt == "json":
            from envdoctor.render.json_ import render_json

            report = redact_report(outcome.report, redactor) if redactor is not None else outcome.report
            emit(render_json(report), opts.output)
        elif opts.output:
            emit(json.dumps(redactor.value(outcome.fix) if redactor is not None else outcome.fix, indent=1,
                            default=str, ensure_ascii=False), opts.output)
    return outcome.code
