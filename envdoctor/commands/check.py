"""`envdoctor check`: options in, one pass of the pipeline (envdoctor.pipeline), the report out.

Only the pipeline (and through it the probe) is imported up front: the target's processes start first,
and what comes after them is imported by a thread while they run (envdoctor.pipeline.start_imports).
"""

from __future__ import annotations

import sys
from typing import IO, Optional

from envdoctor.facts import Report
from envdoctor.options import CheckOptions
from envdoctor.pipeline import check, exit_code, start_imports  # noqa: F401 - start_imports: public here too
from envdoctor.render.formats import check_format, check_output_path, write_formatted
from envdoctor.render.output import emit as write

FORMATS = ("text", "json", "markdown")


def write_output(report: Report, fmt: str, output: Optional[str], verbose: bool = False) -> None:
    # each renderer imported only when its format is written: rich is not needed for JSON
    def text(stream: IO[str], color: Optional[bool]) -> None:
        from envdoctor.render.text import render_text

        render_text(report, stream, color=color, verbose=verbose)

    def json() -> str:
        from envdoctor.render.json_ import render_json

        return render_json(report)

    def markdown() -> str:
        from envdoctor.render.markdown import render_markdown

        return render_markdown(report)

    write_formatted(fmt, output, text, json=json, markdown=markdown)


def emit(text: str, output: Optional[str]) -> None:
    """Write a rendered report to -o FILE (atomically; a bad path is a usage error), else to stdout."""
    write(text, output)


def run(opts: CheckOptions) -> int:
    if opts.fleet_member is not None:  # one node of `envdoctor fleet run`: the report goes out as tagged records
        from envdoctor.fleet.member import run_as_member

        return run_as_member(opts.fleet_member, opts.python, lambda py: check(opts, python=py))
    check_format(opts.fmt, FORMATS)
    check_output_path(opts.output)
    report = check(opts, progress=not opts.quick and sys.stderr.isatty())
    write_output(report, opts.fmt, opts.output, opts.verbose)
    return exit_code(report)
