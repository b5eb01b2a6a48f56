"""`envdoctor rules`: list and validate the rule tables (a bad file is an error naming file:line, exit 2)."""

from __future__ import annotations

from envdoctor.checks import load_all
from envdoctor.redact import Redactor
from envdoctor.render.output import emit_rendered
from envdoctor.render.rules import render_rules
from envdoctor.rules import load_tables


def run(rules_dirs: list[str]) -> int:
    tables = load_tables(rules_dirs)  # raises RuleFileError (file:line) on the first bad row
    redact = Redactor(secrets=()).text
    emit_rendered(lambda stream: render_rules(tables, list(load_all().rules.values()), redact, stream))
    return 0
