"""ED410: mmcv._ext imports, but it is envdoctor's compat layer serving it: say how much of mmcv's _ext that is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from envdoctor import op_coverage
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import envdoctor_fix
from envdoctor.fact_readers import comp, consumers
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

SERVED = Rule(
    id="ED410", name="mmcv-ext-served-by-compat", severity="info", component="mmcv._ext",
    summary="mmcv._ext is served by envdoctor's compat layer: N of the M kernels of this mmcv version, the rest "
            "raise an error naming the op.",
    rationale="Where no compiled mmcv._ext can load, envdoctor's compat layer (the `envdoctor-compat` "
    "distribution) serves the module in pure PyTorch, so `import mmcv._ext` succeeds and `mmcv.ops` imports. It "
    "computes the kernels it implements exactly as mmcv's own; every other name exists (mmcv checks them with "
    "hasattr) but raises CompatOpUnavailableError when called. Which kernels it serves is read from the module "
    "the target imported; how many an mmcv version has is mmcv's pybind.cpp (rules/mmcv_ops.toml); which op "
    "families each OpenMMLab package's models use was counted over 2,639 configs.",
    evidence=("components.mmcv._ext.facts.compat.served", "components.mmcv._ext.facts.compiler_version",
              "components.mmcv.version", "packages.<consumer>.version"),
    tables=("mmcv_ext_names", "mmcv_op_family", "mmcv_consumer_ops"),
    fixes=("for models that use an op it does not serve: the build strategy (`envdoctor fix --apply --strategy "
           "build`) or an official wheel",),
)


def _served(report: Report) -> list[str] | None:
    ext = report.components.get("mmcv._ext")
    if ext is None or ext.load is None or ext.load.status != "ok":
        return None
    facts = ext.facts.get("compat")
    if not isinstance(facts, dict) or not isinstance(facts.get("served"), list):
        return None
    return [str(n) for n in facts["served"]]


@check(SERVED)
def mmcv_ext_served_by_compat(report: Report, tables: Tables) -> Iterable[Finding]:
    served = _served(report)
    if served is None:
        return
    m = comp(report, "mmcv")
    version = ((m.facts.get("version_py") or {}).get("__version__") or m.version) if m is not None else None
    cov = op_coverage.ext_coverage(tables, version, served)
    users = op_coverage.consumer_coverage(tables, consumers(report, tables), served)
    short = [u for u in users if not u.complete]
    detail = ("The compat layer computes these kernels in PyTorch exactly as mmcv's own; calling any other "
              "raises CompatOpUnavailableError naming the op.")
    if cov.source is None:
        detail += f" No kernel list for mmcv {version} in the rule tables: counted against the newest one."
    if users:
        detail += " " + " ".join(op_coverage.consumer_line(u) + "." for u in users)
    fixes = []
    if short:
        fixes.append(Fix(description="for the models whose ops it does not serve: build mmcv's ops for this "
                                     "environment, or install an official wheel where one exists",
                         commands=[envdoctor_fix(report, "build")], strategy="build"))
    yield finding(SERVED, f"mmcv._ext is {op_coverage.served_phrase(cov)}", detail=detail,
                  evidence={"component": "mmcv._ext", "served_by": "envdoctor-compat",
                            "summary": op_coverage.served_phrase(cov, shown=3),
                            "kernels_served": len(cov.served), "kernels_total": cov.total,
                            "missing": cov.missing, "served": cov.served, "mmcv": version,
                            "kernel_list": cov.source,
                            "consumers": {u.package: {"covered": u.covered,
                                                      "not_covered": [x["family"] for x in u.uncovered]}
                                          for u in users}},
                  fixes=fixes)
