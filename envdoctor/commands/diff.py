"""`envdoctor diff A.json [B.json]`: what differs between two reports, most important first.

B defaults to a fresh probe of the current (or --python) environment. Both sides are
redacted the same way before comparing (redaction is idempotent), so a redacted report
from an issue compares cleanly with a fresh probe here; --no-redact keeps both raw.
Exit 0 when B is not worse than A, 1 when it is (a component fails to import that did
not, or a new error-level finding), 2 on a usage error (e.g. a file that is not a report).
"""

from __future__ import annotations

from envdoctor.report_diff import compare
from envdoctor.errors import UsageError
from envdoctor.options import DiffOptions
from envdoctor.redact import Redactor, redact_report
from envdoctor.render.diff import render_diff_json, render_diff_text
from envdoctor.render.formats import check_format, check_output_path, write_formatted
from envdoctor.report_io import load_report

FORMATS = ("text", "json")


def run(opts: DiffOptions) -> int:
    check_format(opts.fmt, FORMATS)
    if opts.b is not None and opts.python is not None:
        raise UsageError("--python probes a fresh B; give either B.json or --python, not both")
    check_output_path(opts.output)
    a = load_report(opts.a)
    if opts.b is not None:
        b, label_b = load_report(opts.b), opts.b
    else:
        from envdoctor.pipeline import fresh

        b = fresh(opts.python, opts.timeout, opts.rules_dirs)
        label_b = f"fresh probe of {b.python.executable}"
    label_a = opts.a
    if not opts.no_redact:
        redactor = Redactor()
        a, b = redact_report(a, redactor), redact_report(b, redactor)
        label_a, label_b = redactor.text(label_a), redactor.text(label_b)
    diff = compare(a, b, label_a, label_b)
    write_formatted(opts.fmt, opts.output, lambda stream, color: render_diff_text(diff, stream, color=color),
                    json=lambda: render_diff_json(diff))
    return 1 if diff.worse else 0
