"""Markdown for issue trackers: a summary table, the findings, the full JSON in <details>."""

from __future__ import annotations

from envdoctor.facts import Report
from envdoctor.render.json_ import render_json


def render_markdown(report: Report) -> str:
    py = report.python
    g = report.gpu
    lines = [
        f"### envdoctor {report.envdoctor} report",
        "",
        "| component | version | load |",
        "|---|---|---|",
        f"| python | {py.implementation} {py.version} ({py.abi_tag}, {py.platform_tag}) | |",
        f"| nvidia driver | {g.driver_version or 'none'} (CUDA {g.cuda_driver_version or '-'}) | {g.source} |",
    ]
    for name, comp in report.components.items():
        status = comp.load.status if comp.load else ""
        if comp.load and comp.load.error and comp.load.error.message:
            status += ": " + comp.load.error.message.strip().splitlines()[0][:120].replace("|", "\\|")
        lines.append(f"| {name} | {comp.version or '-'} | {status} |")
    lines += ["", "**Findings**", ""]
    if not report.findings:
        lines.append("none")
    for f in report.findings:
        lines.append(f"- `{f.id}` **{f.severity}** {f.title}")
    lines += ["", "<details><summary>full report (JSON)</summary>", "", "```json", render_json(report).rstrip(),
              "```", "", "</details>", ""]
    return "\n".join(lines)
