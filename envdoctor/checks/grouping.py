"""Root causes: which finding explains which, and the order findings are shown in.

One broken install often fires several rules at once: torchvision 0.29.1+cu130 beside torch 2.13.0+cpu gives
ED301 (wrong pairing), ED303 (CUDA build vs CPU torch), ED302 (its ops do not load) and ED703 (the binary needs
libc10_cuda.so), all fixed by the same command. This post-pass marks one finding per root cause as primary and
gives the others ``Finding.explained_by`` (as new findings: a Finding is immutable), so renderers can fold them
without judging anything themselves.

The relation is data (``FOLDS``), read from the real outputs of the test environments and recorded fact sets:

- a pairing or build-variant mismatch explains the load failures it causes;
- a load finding explains the binary forensics (ED7xx) that say *why* the import failed;
- a system-level cause (libstdc++/glibc, NumPy ABI) explains the load failure of the component it names;
- for mmcv, the finding that says what is wrong with the installed mmcv explains the context findings that
  justify its fix (no official wheel: ED405, a source build would fail: ED407).

A finding folds under another only within the same component group (torchvision and torchvision.ops are
one group, mmcv and mmcv._ext another) and only under one at least as severe: an error is never hidden
under a warning. ``explained_by`` always names a primary (chains are followed to their root). The one
exception is a damaged package (ED003, ``ACROSS``): it also explains the findings of the components it
breaks (its evidence["breaks"]: a torch without __init__.py is why mmcv._ext does not load).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from envdoctor.facts import Finding

# rule id -> prefixes of the rule ids whose findings it explains (within one component group)
FOLDS: dict[str, tuple[str, ...]] = {
    # a failed load explains the binary analysis of the same extension (ED7xx is its detail)
    "ED001": ("ED7",),
    "ED201": ("ED7",),
    "ED302": ("ED7",),
    "ED402": ("ED7", "ED405", "ED407"),
    # torchvision built for another torch (version pairing, then CUDA variant) is why its ops do not load
    "ED301": ("ED302", "ED303", "ED7"),
    "ED303": ("ED302", "ED7"),
    # a second copy of torch on sys.path is why the imported version differs from pip's
    "ED203": ("ED204",),
    # NumPy 1.x-built extension under NumPy 2; libstdc++/glibc too old: the reason the named component fails
    "ED501": ("ED001", "ED201", "ED302", "ED402", "ED7"),
    "ED502": ("ED001", "ED201", "ED302", "ED402", "ED7"),
    # mmcv: several distributions over each other explain a missing or broken _ext; a missing _ext is fixed by
    # the compat layer *because* no wheel exists (ED405) and a build would fail (ED407)
    "ED403": ("ED401", "ED402", "ED405", "ED407", "ED7"),
    "ED401": ("ED405", "ED407"),
    # a package damaged on disk explains its own import failure and everything that imports it
    "ED003": ("ED001", "ED201", "ED204", "ED301", "ED302", "ED303", "ED401", "ED402", "ED405", "ED407", "ED7"),
}
# rules whose findings also explain findings in the component groups named in their evidence["breaks"]
ACROSS = ("ED003",)

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
# component groups in the order the text output lists components
GROUP_ORDER = ("envdoctor", "gpu", "driver", "python", "torch", "torchvision", "mmcv")


def folds(rule_id: str, other_id: str) -> bool:
    """Does a finding of rule_id explain one of other_id (given the same component group)?"""
    return rule_id != other_id and any(other_id.startswith(p) for p in FOLDS.get(rule_id, ()))


def group_of(f: Finding) -> str:
    """The component group a finding is about: the component it names in its evidence, else its own."""
    comp = f.evidence.get("component") if isinstance(f.evidence, dict) else None
    name = comp if isinstance(comp, str) and comp else f.component
    return name.split(".", 1)[0]


def reach(f: Finding) -> set[str]:
    """The component groups whose findings f may explain: its own, plus those it breaks (ACROSS rules)."""
    groups = {group_of(f)}
    breaks = f.evidence.get("breaks") if isinstance(f.evidence, dict) else None
    if f.id in ACROSS and isinstance(breaks, list):
        groups.update(b.split(".", 1)[0] for b in breaks if isinstance(b, str) and b)
    return groups


def _rank(f: Finding) -> int:
    return SEVERITY_RANK.get(f.severity, len(SEVERITY_RANK))


def _group_rank(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group), "") if group in GROUP_ORDER else (len(GROUP_ORDER), group)


def group_findings(findings: list[Finding]) -> list[Finding]:
    """All findings in display order, ``explained_by`` set on every one another one explains (new findings: the
    given ones are left alone): primaries by (severity, component group, id), each followed by what it explains."""
    n = len(findings)
    parent: list[Optional[int]] = [None] * n
    for i, f in enumerate(findings):
        candidates = [j for j, g in enumerate(findings)
                      if j != i and folds(g.id, f.id) and group_of(f) in reach(g) and _rank(g) <= _rank(f)]
        if candidates:
            parent[i] = min(candidates, key=lambda j: (_rank(findings[j]), findings[j].id, j))
    root: list[int] = []
    for i in range(n):
        seen, j = {i}, i
        while parent[j] is not None:
            nxt = parent[j]
            assert nxt is not None
            if nxt in seen:  # cannot happen while FOLDS is acyclic (a test checks it); stay safe anyway
                break
            seen.add(nxt)
            j = nxt
        root.append(j)
    by = [None if root[i] == i else findings[root[i]].id for i in range(n)]
    findings = [f if f.explained_by == by[i] else replace(f, explained_by=by[i]) for i, f in enumerate(findings)]

    def key(i: int) -> tuple:
        f = findings[i]
        return (_rank(f), _group_rank(group_of(f)), f.id, i)

    out: list[Finding] = []
    for p in sorted((i for i in range(n) if root[i] == i), key=key):
        out.append(findings[p])
        out.extend(findings[i] for i in sorted((i for i in range(n) if root[i] == p and i != p), key=key))
    return out
