"""What the compat layer serves, against what an mmcv version's `_ext` has and what its consumers' models use.

Pure functions over the rule tables (rules/mmcv_ops.toml) and a list of served kernel names. The served
names always come from the compat layer itself, never from a table, so a kernel added to it counts at once:
`check` reads them from the stand-in module the target actually imported (the probe's
`mmcv._ext.facts.compat.served`); `fix` reads them from the compat layer envdoctor would install
(:func:`bundled_served`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from envdoctor import tables_query

if TYPE_CHECKING:
    from envdoctor.rules import Tables

WAYS_OUT = "the build strategy (`envdoctor fix --apply --strategy build`) or an official wheel"


@dataclass
class ExtCoverage:
    """How much of one mmcv version's `_ext` the compat layer serves."""

    served: list[str]  # kernels of this mmcv version the layer serves
    missing: list[str]  # kernels of this mmcv version it does not
    mmcv: Optional[str]  # the mmcv version compared against
    source: Optional[str]  # where the version's kernel list comes from (None: no list for this version)

    @property
    def total(self) -> int:
        return len(self.served) + len(self.missing)


@dataclass
class ConsumerCoverage:
    """Whether the compat layer covers the op families one installed package's models use."""

    package: str
    version: str
    covered: list[str] = field(default_factory=list)  # family ids
    uncovered: list[dict[str, Any]] = field(default_factory=list)  # {family, title, missing, configs, of}

    @property
    def complete(self) -> bool:
        return not self.uncovered


def _ext_py() -> Path:
    return Path(__file__).resolve().parent / "compat" / "ext.py"


def bundled_served() -> Optional[list[str]]:
    """The names envdoctor's own compat layer exports from its `mmcv._ext` stand-in (compat/ext.py's
    `__all__`), read from the source so that no torch is needed here; None when it cannot be read."""
    try:
        tree = ast.parse(_ext_py().read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                for t in node.targets):
            try:
                names = ast.literal_eval(node.value)
            except ValueError:
                return None  # built at import time: only an import (with torch) could say
            return sorted(str(n) for n in names)
    return None


def _kernel_row(tables: Tables, mmcv_version: Optional[str]) -> Optional[dict[str, Any]]:
    for row in tables.rows("mmcv_ext_names"):
        if mmcv_version and tables_query.in_spec(mmcv_version, row["mmcv"]):
            return row
    return None


def ext_coverage(tables: Tables, mmcv_version: Optional[str], served: Iterable[str]) -> ExtCoverage:
    """Served vs missing kernels of this mmcv version's `_ext`. Without a list for the version (an mmcv
    older than 1.7), the newest list stands in and `source` is None."""
    row = _kernel_row(tables, mmcv_version)
    rows = tables.rows("mmcv_ext_names")
    kernels = list(row["kernels"]) if row else (list(rows[-1]["kernels"]) if rows else [])
    have = set(served)
    # the missing kernels that the most counted models use come first: they are the ones people will meet
    used: dict[str, int] = {}
    families = {r["family"]: r["kernels"] for r in tables.rows("mmcv_op_family")}
    for use in tables.rows("mmcv_consumer_ops"):
        for k in families.get(use["family"], []):
            used[k] = used.get(k, 0) + (use.get("configs") or 1)
    missing = sorted((k for k in kernels if k not in have), key=lambda k: (-used.get(k, 0), k))
    return ExtCoverage(served=[k for k in kernels if k in have], missing=missing,
                       mmcv=mmcv_version, source=row["source"] if row else None)


def consumer_coverage(tables: Tables, packages: dict[str, str], served: Iterable[str]) -> list[ConsumerCoverage]:
    """For every installed package the tables know the op families of (in the tables' order)."""
    have = set(served)
    families = {r["family"]: r for r in tables.rows("mmcv_op_family")}
    out: dict[str, ConsumerCoverage] = {}
    for row in tables.rows("mmcv_consumer_ops"):
        pkg = row["package"]
        if pkg not in packages:
            continue
        cov = out.setdefault(pkg, ConsumerCoverage(pkg, packages[pkg]))
        fam = families.get(row["family"])
        missing = [k for k in fam["kernels"] if k not in have] if fam else ["(unknown family)"]
        if not missing:
            cov.covered.append(row["family"])
        else:
            cov.uncovered.append({"family": row["family"], "title": fam["title"] if fam else row["family"],
                                  "missing": missing, "configs": row.get("configs"), "of": row.get("of")})
    return list(out.values())


def served_phrase(cov: ExtCoverage, shown: int = 6) -> str:
    """"served by envdoctor's compat layer (25 of 110 kernels; missing: a, b, … +79)"."""
    head = f"served by envdoctor's compat layer ({len(cov.served)} of {cov.total} kernels"
    if not cov.missing:
        return head + ")"
    more = f", … +{len(cov.missing) - shown}" if len(cov.missing) > shown else ""
    return head + f"; missing: {', '.join(cov.missing[:shown])}{more})"


def consumer_line(cov: ConsumerCoverage) -> str:
    """One plan line: does the compat layer cover this package's op families?"""
    name = f"{cov.package} {cov.version}"
    if cov.complete:
        return f"{name}: covered (all its models' op families: {', '.join(cov.covered)})"
    parts = []
    for u in cov.uncovered:
        count = f", {u['configs']} of {u['of']} configs" if u.get("configs") is not None and u.get("of") else ""
        parts.append(f"{u['title']}{' (' + count[2:] + ')' if count else ''}")
    covered = f"; covered: {', '.join(cov.covered)}" if cov.covered else ""
    return f"{name}: NOT covered: {'; '.join(parts)} → for those models: {WAYS_OUT}{covered}"
