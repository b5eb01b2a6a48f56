"""ED8xx: why a source build failed, read from its log against the [[build_failure]] table.

`envdoctor fix --strategy build` records a failed build in `report.build`
({"status", "log", "tail", "log_text"}); these checks turn it into findings. Pure: the log's
text is in the report; nothing is read from disk here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from envdoctor.build.failures import RULES, classify
from envdoctor.checks import check
from envdoctor.facts import Finding, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def _build_failures(report: Report, tables: Tables) -> list[Finding]:
    rec = report.build
    if not isinstance(rec, dict) or rec.get("status") in (None, "built", "interrupted"):
        return []
    return classify(str(rec.get("log_text") or "\n".join(rec.get("tail") or [])), tables,
                    status=str(rec.get("status")), log=rec.get("log"))


def _check_for(rule_id: str) -> Callable[[Report, Any], Iterable[Finding]]:
    def run(report: Report, tables: Tables) -> Iterable[Finding]:
        return [f for f in _build_failures(report, tables) if f.id == rule_id]
    return run


# one registered check per id, so that `explain`, --select/--ignore and docs/rules.md know each
for _rule in RULES.values():
    check(_rule)(_check_for(_rule.id))
