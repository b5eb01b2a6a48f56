"""`envdoctor explain ID`: what a rule checks, why, what it reads, how it is fixed, and its sources."""

from __future__ import annotations

from envdoctor.checks import load_all
from envdoctor.errors import UsageError
from envdoctor.render.explain import render_explain
from envdoctor.render.output import emit_rendered
from envdoctor.rules import load_tables


def run(rule_id: str, rules_dirs: list[str] | None = None) -> int:
    reg = load_all()
    rule = reg.rules.get(rule_id.strip().upper())
    if rule is None:
        known = ", ".join(sorted(reg.rules))
        raise UsageError(f"no rule {rule_id!r}; known rules: {known}")
    tables = load_tables(rules_dirs or []) if rule.tables else None
    emit_rendered(lambda stream: render_explain(rule, tables, stream))
    return 0
