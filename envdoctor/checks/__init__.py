"""Checks: pure functions of the facts and the rule tables that yield findings.

Each check has a stable id (ED###), a name, a severity and a component. Checks
never run subprocesses or touch the disk: everything they read is in the Report
or the tables, and they change neither (Report and Finding are immutable). A
check that raises becomes a finding (ED000), never a crash.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from envdoctor.facts import Finding, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

CheckFn = Callable[[Report, "Tables"], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    component: str
    summary: str
    rationale: str = ""
    evidence: tuple[str, ...] = ()  # the facts it reads, as report paths
    tables: tuple[str, ...] = ()  # the rule tables it reads
    fixes: tuple[str, ...] = ()  # what it proposes, in words
    # components whose failed load this rule explains when it fires: the generic ED001 is then
    # dropped for them (a finding also explains the component named in its evidence["component"])
    explains: tuple[str, ...] = ()
    generic: bool = False  # a catch-all (ED001) that gives way to a specific finding


@dataclass
class Registry:
    rules: dict[str, Rule] = field(default_factory=dict)
    functions: dict[str, CheckFn] = field(default_factory=dict)


REGISTRY = Registry()


def check(rule: Rule) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        if rule.id in REGISTRY.rules:
            raise RuntimeError(f"duplicate check id {rule.id}")
        REGISTRY.rules[rule.id] = rule
        REGISTRY.functions[rule.id] = fn
        return fn

    return register


def finding(rule: Rule, title: str, detail: str = "", evidence: Optional[dict[str, Any]] = None,
            fixes: Optional[list[Any]] = None, severity: Optional[str] = None,
            component: Optional[str] = None) -> Finding:
    return Finding(id=rule.id, name=rule.name, severity=severity or rule.severity,
                   component=component or rule.component, title=title, detail=detail,
                   evidence=evidence or {}, fixes=tuple(fixes or ()))


def load_all() -> Registry:
    """Import every module in this package so that their @check decorators register."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return REGISTRY


def _matches(rule_id: str, patterns: Optional[Iterable[str]]) -> bool:
    return any(rule_id.startswith(p.strip().upper()) for p in patterns or () if p.strip())


def explained_components(findings: Iterable[Finding], reg: Optional[Registry] = None) -> set[str]:
    """The components whose load failure a specific (non-generic) finding explains."""
    reg = reg or REGISTRY
    out: set[str] = set()
    for f in findings:
        rule = reg.rules.get(f.id)
        if rule is None or rule.generic:
            continue
        out.update(rule.explains)
        comp = f.evidence.get("component") if isinstance(f.evidence, dict) else None
        if isinstance(comp, str):
            out.add(comp)
    return out


def dedupe(findings: list[Finding], reg: Optional[Registry] = None) -> list[Finding]:
    """Drop a generic finding (ED001) when a specific one explains the same component's failure."""
    reg = reg or REGISTRY
    explained = explained_components(findings, reg)
    keep = []
    for f in findings:
        rule = reg.rules.get(f.id)
        comp = f.evidence.get("component") if isinstance(f.evidence, dict) else None
        if rule is not None and rule.generic and (comp in explained or f.component in explained):
            continue
        keep.append(f)
    return keep


def run_checks(report: Report, tables: Tables, select: Optional[list[str]] = None,
               ignore: Optional[list[str]] = None) -> list[Finding]:
    """Run every selected check over the built facts (load failures already classified: classify.classified),
    dedupe, then mark which finding explains which (Finding.explained_by) and put each root cause before the
    findings it explains. The report is only read."""
    reg = load_all()
    out: list[Finding] = []
    for rule_id in sorted(reg.rules):
        if select and not _matches(rule_id, select):
            continue
        if _matches(rule_id, ignore):
            continue
        try:
            out.extend(reg.functions[rule_id](report, tables))
        except Exception as exc:  # a broken check must not hide the others
            out.append(Finding(id="ED000", name="check-crashed", severity="warning", component="envdoctor",
                               title=f"check {rule_id} failed: {type(exc).__name__}: {exc}",
                               detail="This is a bug in envdoctor; please report it with this output.",
                               evidence={"traceback": traceback.format_exc()[-2000:]}))
    from envdoctor.checks.grouping import group_findings  # root causes first; the rest explained_by them

    return group_findings(dedupe(out, reg))
