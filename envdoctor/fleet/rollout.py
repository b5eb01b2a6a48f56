"""`envdoctor fleet diff`: two summaries (before/after a rollout), node by node, ranked like `envdoctor diff`.

Nodes are matched by their name in the summaries: real names, or pseudonyms made with the same
`--names` file (otherwise node-03 of one run need not be node-03 of the other; said in the output).
Nodes that changed the same way are shown together, worse transitions first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from envdoctor.fleet.fingerprint import NodeFacts
from envdoctor.fleet.names import natural
from envdoctor.fleet.ranking import differences

SCHEMA = "envdoctor.fleet-diff/1"


@dataclass
class Transition:
    kind: str  # changed | lost (reported, now missing) | recovered | added | removed | still_missing
    nodes: list[str]
    worse: bool
    before: Optional[str] = None  # fingerprint, or "missing: reason"
    after: Optional[str] = None
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FleetDiff:
    a: str
    b: str
    unchanged: int = 0
    transitions: list[Transition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def worse(self) -> bool:
        return any(t.worse for t in self.transitions)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "a": self.a, "b": self.b, "worse": self.worse, "unchanged": self.unchanged,
                "transitions": [asdict(t) for t in self.transitions], "notes": list(self.notes)}


def _index(summary: dict[str, Any]) -> tuple[dict[str, tuple[str, NodeFacts]], dict[str, str]]:
    reported: dict[str, tuple[str, NodeFacts]] = {}
    for g in summary["groups"]:
        nf = NodeFacts.from_dict(g["facts"])
        fp = str(g.get("fingerprint") or nf.fingerprint)
        for n in g["nodes"]:
            reported[str(n)] = (fp, nf)
    missing = {str(m.get("node")): f"{m.get('reason')}: {m.get('detail')}" for m in summary["missing"]
               if isinstance(m, dict) and m.get("node") != "?"}
    return reported, missing


def diff_summaries(a: dict[str, Any], b: dict[str, Any], label_a: str = "A", label_b: str = "B") -> FleetDiff:
    out = FleetDiff(label_a, label_b)
    ra, ma = _index(a)
    rb, mb = _index(b)
    if a.get("redacted") or b.get("redacted"):
        out.notes.append("node names are pseudonyms: they match between the two summaries only if both were "
                         "made with the same --names file")
    buckets: dict[tuple[str, Optional[str], Optional[str]], Transition] = {}
    cache: dict[tuple[str, str], tuple[list[dict[str, Any]], bool]] = {}

    def add(kind: str, node: str, worse: bool, before: Optional[str], after: Optional[str],
            changes: Optional[list[dict[str, Any]]] = None) -> None:
        key = (kind, before, after)
        t = buckets.get(key)
        if t is None:
            t = buckets[key] = Transition(kind, [], worse, before, after, changes or [])
        t.nodes.append(node)

    for node in sorted(set(ra) | set(ma) | set(rb) | set(mb), key=natural):
        if node in ra and node in rb:
            (fa, na), (fb, nb) = ra[node], rb[node]
            if fa == fb:
                out.unchanged += 1
                continue
            if (fa, fb) not in cache:
                changes, worse = differences(na, nb)
                cache[(fa, fb)] = ([asdict(c) for c in changes], worse)
            ch, worse = cache[(fa, fb)]
            add("changed", node, worse, fa, fb, ch)
        elif node in ra and node in mb:
            add("lost", node, True, ra[node][0], "missing: " + mb[node])
        elif node in ma and node in rb:
            add("recovered", node, rb[node][1].errors > 0, "missing: " + ma[node], rb[node][0])
        elif node in rb:
            add("added", node, rb[node][1].errors > 0, None, rb[node][0])
        elif node in mb and node in ma:
            add("still_missing", node, True, "missing: " + ma[node], "missing: " + mb[node])
        elif node in mb:
            add("lost", node, True, None, "missing: " + mb[node])
        else:
            add("removed", node, False, ra[node][0] if node in ra else "missing: " + ma[node], None)
    out.transitions = sorted(buckets.values(), key=lambda t: (not t.worse, -len(t.nodes), t.kind))
    return out
