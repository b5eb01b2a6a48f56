"""Generic: a component whose import fails or kills the process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import reinstall_fix
from envdoctor.facts import FAILED, Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

IMPORT_FAILS = Rule(
    id="ED001",
    name="import-fails",
    severity="error",
    component="*",
    summary="A component's import fails, crashes or hangs in a fresh process of the target interpreter.",
    rationale="envdoctor imports each component in its own process, so a crash or hang is seen, not suffered. "
    "More specific checks explain the cause where they can; this one makes sure no failure goes unreported.",
    evidence=("components.*.load",),
    fixes=("the specific check that explains the failure (it replaces this finding when it fires)",),
    generic=True,
)


@check(IMPORT_FAILS)
def import_fails(report: Report, tables: Tables) -> Iterable[Finding]:
    for name, comp in report.components.items():
        load = comp.load
        if load is None or load.status not in ("import_error", "crash", "timeout", "error"):
            continue
        err = load.error
        msg = (err.message.strip().splitlines() or [""])[0] if err else ""
        yield finding(
            IMPORT_FAILS,
            f"`import {name}` fails: {load.status}" + (f" ({err.signal})" if err and err.signal else ""),
            detail=msg,
            evidence={"component": name, "status": load.status, "error_type": err.type if err else None,
                      "message": msg, "cause": load.cause},
            component=name.split(".")[0],
        )


PROBE_INCOMPLETE = Rule(
    id="ED002",
    name="probe-incomplete",
    severity="warning",
    component="envdoctor",
    summary="A probe could not finish: some facts are missing, so some checks could not judge.",
    rationale="envdoctor reports what it could not find out rather than guessing; a check whose facts are missing "
    "stays silent, so an incomplete probe can hide a problem.",
    evidence=("probe_errors",),
    fixes=("re-run with a longer --timeout, or fix what the probe error names",),
)


@check(PROBE_INCOMPLETE)
def probe_incomplete(report: Report, tables: Tables) -> Iterable[Finding]:
    for err in report.probe_errors:
        yield finding(PROBE_INCOMPLETE, f"probe incomplete: {err.splitlines()[0][:200] if err else '?'}",
                      evidence={"probe_error": err})


DAMAGED = Rule(
    id="ED003",
    name="package-damaged",
    severity="error",
    component="*",
    summary="An installed package is damaged on disk: its import does not give a working module.",
    rationale="A package directory without __init__.py (deleted, or in a directory Python cannot read) still "
    "'imports': Python makes it an empty namespace package, so `import torch` succeeds and the first use fails "
    "(\"module 'torch' has no attribute 'Tensor'\") in whatever imports it next. Files that pip installed and "
    "that are gone (RECORD) break imports the same way. Everything that depends on the package fails with it: "
    "those findings are folded under this one, and no fix for them (a wheel, the compat layer) can work until "
    "the package is reinstalled.",
    evidence=("components.*.facts.package_dirs", "components.*.facts.module", "packages.*.record_missing",
              "packages.*.missing_files"),
    tables=("pytorch_index",),
    fixes=("make the directory readable again (when it is not)", "reinstall the same release over itself: "
           "`python -m pip install --force-reinstall --no-deps NAME==VERSION` (torch/torchvision from PyTorch's "
           "index for their CUDA variant)"),
)

# who imports whom: a damaged package explains its dependents' failures
DEPENDENTS = {"torch": ("torchvision", "torchvision.ops", "mmcv", "mmcv._ext"), "torchvision": ("torchvision.ops",),
              "mmcv": ("mmcv._ext",)}


@check(DAMAGED)
def package_damaged(report: Report, tables: Tables) -> Iterable[Finding]:
    for name, comp in report.components.items():
        damage = comp.facts.get("damage")
        if not isinstance(damage, dict) or not damage.get("problems"):
            continue
        problems = damage["problems"]
        fixes = []
        unreadable = [p for p in problems if p.get("kind") == "unreadable"]
        if unreadable:
            fixes.append(Fix(description="make it readable again (as its owner, or root)",
                             commands=[f"chmod -R u+rwX,go+rX {_quote(unreadable[0]['path'])}"]))
        dists = comp.facts.get("distributions") or [comp.distribution or name]
        fixes += [reinstall_fix(report, tables, d) for d in dists[:1]]
        if unreadable:
            fixes[-1].description = "or " + fixes[-1].description
        broken_by = [d for d in DEPENDENTS.get(name, ()) if _failed(report, d)]
        version = comp.version or "?"
        yield finding(
            DAMAGED, f"{name} {version} is damaged: {problems[0]['detail']}",
            detail="".join(p["detail"] + ". " for p in problems[1:])
            + f"`import {name}` does not give a working module"
            + (f", so {', '.join(broken_by)} fail{'s' if len(broken_by) == 1 else ''} too." if broken_by else "."),
            evidence={"component": name, "problems": [p["kind"] for p in problems],
                      "paths": [p["path"] for p in problems if p.get("path")],
                      "probe_status": damage.get("probe_status"), "breaks": broken_by},
            fixes=fixes, component=name.split(".")[0])


def _failed(report: Report, name: str) -> bool:
    c = report.components.get(name)
    return c is not None and c.load is not None and c.load.status in FAILED


def _quote(path: str) -> str:
    return f'"{path}"' if any(c in path for c in " '\"$`") else path
