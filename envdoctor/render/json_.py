"""The JSON report: the Report object as is, stable key order."""

from __future__ import annotations

import json

from envdoctor.facts import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
