"""The fleet summary: members grouped by fingerprint, the majority, how every outlier differs, findings
counted across nodes, and the nodes that gave no report. Pure: collected reports in, a summary out.

Its JSON is `envdoctor.fleet/1` (docs/fleet.schema.json); readers accept unknown fields, an
incompatible change bumps the major, as for the report.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from envdoctor import __version__
from envdoctor.errors import ReportError
from envdoctor.fleet.collect import Collected, Missing
from envdoctor.fleet.fingerprint import NodeFacts
from envdoctor.fleet.names import Pseudonyms, natural
from envdoctor.fleet.ranking import differences

SCHEMA = "envdoctor.fleet/1"
SCHEMA_PREFIX = "envdoctor.fleet/"
_SEVERITY = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Group:
    fingerprint: str
    nodes: list[str]
    facts: NodeFacts
    majority: bool = False
    worse: bool = False  # than the majority, by `envdoctor diff`'s ranking
    differences: list[dict[str, Any]] = field(default_factory=list)  # compare.Change as dicts

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "count": len(self.nodes), "majority": self.majority,
                "worse": self.worse, "errors": self.facts.errors, "nodes": list(self.nodes),
                "facts": self.facts.to_dict(), "differences": list(self.differences)}


@dataclass
class FindingCount:
    id: str
    severity: str
    component: str
    title: str
    count: int
    nodes: list[str]


@dataclass
class FleetSummary:
    schema: str = SCHEMA
    envdoctor: str = __version__
    created: str = ""
    redacted: bool = True
    reported: int = 0
    expected: int = 0
    groups: list[Group] = field(default_factory=list)
    findings: list[FindingCount] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    launcher: Optional[dict[str, Any]] = None

    @property
    def majority(self) -> Optional[Group]:
        return next((g for g in self.groups if g.majority), None)

    @property
    def exit_code(self) -> int:
        """1 if a node has an error finding, an outlier is worse than the majority, or a node gave no report."""
        bad = any(g.facts.errors or g.worse for g in self.groups) or bool(self.missing) or not self.groups
        return 1 if bad else 0

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "envdoctor": self.envdoctor, "created": self.created,
                "redacted": self.redacted, "reported": self.reported, "expected": self.expected,
                "exit_code": self.exit_code, "groups": [g.to_dict() for g in self.groups],
                "findings": [asdict(f) for f in self.findings], "missing": [asdict(m) for m in self.missing],
                "launcher": self.launcher}


def _labels(collected: Collected) -> dict[tuple[str, Optional[str]], str]:
    """node, or node#task where one node ran several tasks."""
    keys = [(m.node, m.task) for m in collected.members] + [(m.node, m.task) for m in collected.missing]
    tasks: dict[str, set[Optional[str]]] = defaultdict(set)
    for node, task in keys:
        tasks[node].add(task)
    return {(node, task): f"{node}#{task}" if len(tasks[node]) > 1 and task is not None else node
            for node, task in keys}


def build(collected: Collected, names: Optional[Pseudonyms]) -> FleetSummary:
    """Group, rank, count. names=None keeps real node names (--no-redact)."""
    if names is not None:
        names.assign([m.node for m in collected.members] + [m.node for m in collected.missing if m.node != "?"])
    rename = names or (lambda n: n)
    labels = _labels(collected)

    def label(node: str, task: Optional[str]) -> str:
        lbl = labels[(node, task)]
        return rename(node) + lbl[len(node):]

    summary = FleetSummary(created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                           redacted=names is not None)
    missing = list(collected.missing)
    by_fp: dict[str, Group] = {}
    for m in collected.members:
        nf = m.facts
        if nf is None:
            missing.append(Missing(m.node, m.task, "not_a_report", f"{m.source or 'its output'}: {m.problem}"))
            continue
        fp = nf.fingerprint
        g = by_fp.get(fp)
        if g is None:
            g = by_fp[fp] = Group(fp, [], nf)
        g.nodes.append(label(m.node, m.task))
    groups = list(by_fp.values())
    scrub = _scrubber(names)
    for g in groups:
        g.nodes.sort(key=natural)
        if names is not None:  # a node's own name in an error or a title (a path like /envs/node06/...)
            g.facts.load_errors = {k: scrub(v) for k, v in g.facts.load_errors.items()}
            g.facts.findings = [dict(f, title=scrub(f["title"])) for f in g.facts.findings]
    # the majority: most nodes; on a tie the healthier, then a stable order
    groups.sort(key=lambda g: (-len(g.nodes), g.facts.errors, len(g.facts.findings), g.fingerprint))
    if groups:
        groups[0].majority = True
        for g in groups[1:]:
            changes, g.worse = differences(groups[0].facts, g.facts)
            g.differences = [asdict(c) for c in changes]
        # the outliers that matter first, then by how many errors and nodes
        groups[1:] = sorted(groups[1:], key=lambda g: (not g.worse, -g.facts.errors, -len(g.nodes), g.fingerprint))
    summary.groups = groups
    summary.findings = _count_findings(groups)
    summary.missing = [Missing(label(m.node, m.task) if m.node != "?" else "?", m.task, m.reason, scrub(m.detail))
                       for m in sorted(missing, key=lambda m: (natural(m.node), natural(m.task or "")))]
    summary.reported = sum(len(g.nodes) for g in groups)
    summary.expected = summary.reported + len(summary.missing)
    if collected.launcher is not None:
        summary.launcher = _launcher(collected.launcher, names)
    return summary


def _count_findings(groups: list[Group]) -> list[FindingCount]:
    counts: dict[str, FindingCount] = {}
    titles: dict[str, Counter[str]] = defaultdict(Counter)
    for g in groups:
        for f in {x["id"]: x for x in g.facts.findings}.values():
            fc = counts.get(f["id"])
            if fc is None:
                fc = counts[f["id"]] = FindingCount(f["id"], f["severity"], f["component"], f["title"], 0, [])
            elif _SEVERITY.get(f["severity"], 3) < _SEVERITY.get(fc.severity, 3):
                fc.severity = f["severity"]
            fc.count += len(g.nodes)
            fc.nodes.extend(g.nodes)
            titles[f["id"]][f["title"]] += len(g.nodes)
    for fid, fc in counts.items():
        fc.title = titles[fid].most_common(1)[0][0]
        fc.nodes.sort(key=natural)
    return sorted(counts.values(), key=lambda f: (_SEVERITY.get(f.severity, 3), -f.count, f.id))


def _scrubber(names: Optional[Pseudonyms]) -> Callable[[str], str]:
    """For text from the launcher and the nodes' error lines: node names, then home, user, host, secrets."""
    if names is None:
        return lambda text: text
    from envdoctor.redact import Redactor

    red = Redactor()
    return lambda text: red.text(names.scrub(text))


def _launcher(info: dict[str, Any], names: Optional[Pseudonyms]) -> dict[str, Any]:
    out = dict(info)
    scrub = _scrubber(names)
    for key in ("command", "stderr_tail"):
        if isinstance(out.get(key), list):
            out[key] = [scrub(str(s)) for s in out[key]]
    return out


def load_summary(data: Any, name: str) -> dict[str, Any]:
    """A decoded summary this envdoctor reads (for `fleet diff`); ReportError otherwise."""
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise ReportError(f"{name} is not an envdoctor fleet summary (write one with `envdoctor fleet summarize "
                          "--format json`)")
    if str(data["schema"])[len(SCHEMA_PREFIX):].split(".", 1)[0] != SCHEMA[len(SCHEMA_PREFIX):]:
        raise ReportError(f"{name} is a fleet summary of schema {data['schema']!r}; this envdoctor reads {SCHEMA!r}")
    if not isinstance(data.get("groups"), list) or not isinstance(data.get("missing"), list) or not all(
            isinstance(g, dict) and isinstance(g.get("nodes"), list) and isinstance(g.get("facts"), dict)
            for g in data["groups"]):
        raise ReportError(f"{name} is a damaged envdoctor fleet summary (groups or missing)")
    return data
