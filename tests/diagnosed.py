"""What `check` does between the probe and the renderers, for facts the tests build or load from tests/data:
build the facts (classify.classified), run the checks, and return the new, immutable Report with its findings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from envdoctor.checks import run_checks
from envdoctor.classify import classified
from envdoctor.facts import Report


def diagnosed(report: Report, tables: Any, **kw: Any) -> Report:
    facts = classified(report, tables) if tables is not None else report
    return replace(facts, findings=tuple(run_checks(facts, tables, **kw)))


def findings_of(report: Report, tables: Any, **kw: Any) -> list:
    """The findings alone (a list, as run_checks gives them)."""
    return list(diagnosed(report, tables, **kw).findings)
