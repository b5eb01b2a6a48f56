"""A fleet summary as Markdown for a ticket: the verdict, the groups, the outliers' differences, the findings
across nodes and the nodes without a report. Computes nothing."""

from __future__ import annotations

from typing import Any

from envdoctor.render.fleet_text import FIELD_LABELS, change_text, headline, launcher_lines, nodes_text, verdict
from envdoctor.render.markdown import SEVERITY_MARK, code, inline, text


def render_fleet_markdown(s: dict[str, Any]) -> str:
    out = [f"## envdoctor fleet: {text(headline(s))}", "", f"**{text(verdict(s))}**", ""]
    groups = s["groups"]
    if groups:
        out += ["| group | nodes | " + " | ".join(FIELD_LABELS.values()) + " |",
                "|---|---|" + "---|" * len(FIELD_LABELS)]
        for g in groups:
            name = "majority" if g["majority"] else ("❌ outlier" if g["worse"] else "outlier")
            cells = [code(g["facts"]["fields"].get(k, "")) for k in FIELD_LABELS]
            out.append(f"| {name} {code(g['fingerprint'])} | {g['count']}: {text(nodes_text(g['nodes'], 6))} | "
                       + " | ".join(cells) + " |")
        out.append("")
    for g in groups:
        if g["majority"] or not g["differences"]:
            continue
        out.append(f"### {'❌ ' if g['worse'] else ''}{text(nodes_text(g['nodes'], 6))} vs. the majority")
        out += [f"- {inline(change_text(ch))}" for ch in g["differences"]]
        out.append("")
    if s["findings"]:
        out += ["### Findings across nodes", "", "| | id | nodes | title |", "|---|---|---|---|"]
        for fc in s["findings"]:
            out.append(f"| {SEVERITY_MARK.get(fc['severity'], '')} | {fc['id']} | {fc['count']} of {s['reported']} | "
                       f"{inline(fc['title'], table=True)} |")
        out.append("")
    if s["missing"]:
        out += ["### No report from", ""]
        for m in s["missing"]:
            who = m["node"] if m["node"] != "?" else f"task {m['task']}"
            out.append(f"- {text(who)}: {text(m['reason'])}: {text(m['detail'])}")
        out.append("")
    la = launcher_lines(s)
    if la:
        out += ["```text", *la, "```", ""]
    return "\n".join(out) + "\n"
