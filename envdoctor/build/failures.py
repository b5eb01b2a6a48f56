"""A failed build log -> findings with ids, causes and fixes (the [[build_failure]] table, rules/build.toml).

Pure: the log's text in, findings out. The ids are registered as checks in
envdoctor/checks/build_.py so that `envdoctor explain ED8xx` and docs/rules.md cover them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from envdoctor.build.runner import first_errors
from envdoctor.checks import Rule, finding
from envdoctor.facts import Finding, Fix

if TYPE_CHECKING:
    from envdoctor.rules import Tables

_SUMMARY = {
    "ED800": ("source-build-failed", "A source build failed for a reason no [[build_failure]] row recognises; "
              "the last lines of its log say why."),
    "ED801": ("build-nvcc-torch-cuda-mismatch", "The build's nvcc is another CUDA major than torch's build."),
    "ED802": ("build-unsupported-host-compiler", "nvcc rejected the host C++ compiler as too new."),
    "ED803": ("build-oom-killed", "A compiler job was killed, almost always by the kernel's out-of-memory killer."),
    "ED804": ("build-missing-python-headers", "Python.h of the target interpreter is not installed."),
    "ED805": ("build-no-pkg-resources", "setup.py imports pkg_resources, which setuptools >= 82 no longer has."),
    "ED806": ("build-msvc-missing", "No MSVC compiler was available to the build (Windows)."),
    "ED807": ("build-disk-full", "The disk or the temporary directory filled up during the build."),
    "ED808": ("build-cxx-standard", "The package compiles with an older C++ standard than torch's headers need."),
    "ED809": ("build-python313-get-version", "mmcv's setup.py cannot read its version on Python 3.13."),
    "ED810": ("build-missing-library-at-link", "The linker did not find a library the extension needs."),
    "ED811": ("build-without-ops", "The build could not import torch and produced mmcv without its ops."),
}

RULES: dict[str, Rule] = {
    rid: Rule(id=rid, name=name, severity="error", component="mmcv", summary=summary,
              rationale="Read from the log of `envdoctor fix --strategy build` (report.build): the "
              "[[build_failure]] rows are tried by priority against it; each matching row is one finding with "
              "the row's title and fix, quoting the matching log line.",
              evidence=("build.log_text", "build.status"), tables=("build_failure",),
              fixes=("the fix of the matching [[build_failure]] row",) if rid != "ED800" else
              ("read the log's last lines; report the message so a [[build_failure]] row can be added",),
              explains=("mmcv._ext",))
    for rid, (name, summary) in _SUMMARY.items()
}
GENERIC = "ED800"


def _line_of(text: str, start: int) -> str:
    begin = text.rfind("\n", 0, start) + 1
    end = text.find("\n", start)
    return text[begin:end if end >= 0 else len(text)].strip()[:300]


def classify(log_text: str, tables: Tables, status: str = "failed", log: Optional[str] = None) -> list[Finding]:
    """One finding per matching [[build_failure]] row (first match of each id), most specific first;
    ED800 with the log's last lines when nothing matches."""
    out: list[Finding] = []
    seen: set[str] = set()
    rows = sorted(tables.rows("build_failure"), key=lambda r: r.get("priority", 100))
    for row in rows:
        rule = RULES.get(row["id"])
        if rule is None or row["id"] in seen:
            continue
        m = re.search(row["pattern"], log_text)
        if not m:
            continue
        seen.add(row["id"])
        detail_group = m.groupdict().get("detail")
        evidence = {"cause": row["cause"], "line": _line_of(log_text, m.start()), "log": log,
                    "component": "mmcv._ext", "source": row["source"]}
        if detail_group:
            evidence["detail"] = detail_group
        out.append(finding(rule, row["title"], detail=f"log: {evidence['line']}", evidence=evidence,
                           fixes=[Fix(description=row["fix"], strategy="build")]))
    if not out:
        lines = log_text.strip().splitlines()
        errors = first_errors(lines)
        tail = [ln for ln in lines if ln.strip()][-8:]
        what = "built without a compiled extension" if status == "no-ops" else "failed"
        out.append(finding(RULES[GENERIC], f"the source build {what}; no known cause matched its log",
                           detail="\n".join(errors or tail),
                           evidence={"log": log, "errors": errors, "tail": tail, "component": "mmcv._ext"},
                           fixes=[Fix(description=f"read the full log{(' ' + log) if log else ''}")]))
    return out
