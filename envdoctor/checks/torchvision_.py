"""ED3xx: torchvision against torch: versions, CUDA variants, and its compiled ops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from envdoctor import tables_query
from envdoctor.checks import Rule, check, finding
from envdoctor.checks.advice import envdoctor_fix, torchvision_choice
from envdoctor.fact_readers import comp, load_cause, load_message, torch_cuda, torch_version
from envdoctor.facts import FAILED, Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

PAIR = Rule(
    id="ED301", name="torchvision-torch-mismatch", severity="error", component="torchvision",
    summary="The installed torchvision is built for another torch version.",
    rationale="Up to 0.29.0 every torchvision wheel pins one torch release (Requires-Dist: torch==X); its compiled "
    "ops use torch's C++ ABI and fail to load under another torch ('operator torchvision::nms does not exist'). "
    "torchvision 0.29.1 uses the stable ABI and needs torch >= 2.14.0. `pip install --no-deps` or a later "
    "`pip install torch==...` breaks the pair.",
    evidence=("components.torchvision.version", "components.torch.version"),
    tables=("torch_pair", "pytorch_index"),
    fixes=("install the torchvision that pairs with the installed torch, from torch's CUDA index",),
    explains=("torchvision", "torchvision.ops"),
)

OPS = Rule(
    id="ED302", name="torchvision-ops-fail", severity="error", component="torchvision",
    summary="torchvision's compiled ops (torchvision._C / _C_stable) do not load; the real loader error is named.",
    rationale="torchvision swallows the loader error of its ops library and later fails with 'operator "
    "torchvision::nms does not exist' or \"Couldn't load custom C++ ops\". envdoctor loads the library directly "
    "after torch and reports what the loader said: a missing libc10_cuda.so (a CUDA torchvision on a CPU torch), "
    "an undefined c10 symbol (built for another torch), ...",
    evidence=("components.torchvision.load", "components.torchvision.ops.load",
              "components.torchvision.ops.facts.loader_error"),
    tables=("load_error", "torch_pair"),
    fixes=("install the torchvision that pairs with the installed torch",),
    explains=("torchvision", "torchvision.ops"),
)

VARIANT = Rule(
    id="ED303", name="torchvision-cuda-variant-mismatch", severity="error", component="torchvision",
    summary="torch and torchvision are different builds: CPU vs CUDA, or different CUDA majors.",
    rationale="A +cuXY torchvision needs libc10_cuda/libtorch_cuda from a CUDA torch; torchvision also refuses "
    "a different CUDA major ('Detected that PyTorch and torchvision were compiled with different CUDA major "
    "versions'). Both must come from the same index (download.pytorch.org/whl/cuXY or /cpu).",
    evidence=("components.torch.facts.version_py", "components.torchvision.facts.version_py"),
    tables=("pytorch_index", "torch_pair"),
    fixes=("install torchvision from torch's own index",),
    explains=("torchvision", "torchvision.ops"),
)


def _tv_fix(report: Report, tables: Tables) -> list[Fix]:
    ver = torch_version(report)
    if ver is None:
        return []
    choice = torchvision_choice(report, tables)
    if choice is None:
        return [Fix(description=f"no torchvision is known for torch {ver}: see https://github.com/pytorch/vision#installation")]
    version = choice.pins()["torchvision"]
    return [Fix(description=f"install torchvision {version} ({choice.reason}) (or `{envdoctor_fix(report, 'wheel')}`)",
                commands=choice.commands(), strategy="wheel", choice=choice)]


def _tv_version(report: Report) -> Optional[str]:
    c = comp(report, "torchvision")
    if c is None:
        return None
    return (c.facts.get("version_py") or {}).get("__version__") or c.version


@check(PAIR)
def torchvision_torch_mismatch(report: Report, tables: Tables) -> Iterable[Finding]:
    tv = _tv_version(report)
    ver = torch_version(report)
    if tv is None or ver is None:
        return
    row = tables_query.torch_pair_row(tables, tv)
    if row is None or tables_query.in_spec(ver, row["torch"]):
        return
    series = " (judged by its series)" if row.get("series_match") else ""
    yield finding(PAIR, f"torchvision {tv} is built for torch {row['torch']}{series}, but torch {ver} is installed",
                  evidence={"torchvision": tv, "torch": ver, "needs": row["torch"], "source": row["source"]},
                  fixes=_tv_fix(report, tables))


def _explain_loader(cause: dict[str, Any], report: Report) -> str:
    kind = cause.get("kind")
    lib = cause.get("library") or ""
    if kind == "missing_library" and ("c10_cuda" in lib or "torch_cuda" in lib):
        return f"{lib} belongs to a CUDA build of torch: this torchvision is a CUDA build, torch is not."
    if kind == "missing_library" and "cudart" in lib:
        return f"{lib} is the CUDA runtime torchvision was built against; torch's CUDA runtime is another one."
    if kind == "undefined_symbol":
        return f"{cause.get('symbol')} is not exported by this torch: torchvision was built for another torch."
    if kind == "missing_procedure":
        return "a torch DLL lacks a function torchvision imports (Windows error 127): built for another torch."
    return ""


@check(OPS)
def torchvision_ops_fail(report: Report, tables: Tables) -> Iterable[Finding]:
    tv_c = comp(report, "torchvision")
    if tv_c is None:
        return
    ops = report.components.get("torchvision.ops")
    ops_failed = ops is not None and ops.load is not None and ops.load.status in FAILED
    tv_cause = load_cause(report, "torchvision")
    tv_failed_on_ops = (tv_c.load is not None and tv_c.load.status in FAILED
                        and tv_cause.get("kind") in ("ops_not_registered", "cuda_major_mismatch"))
    if not (ops_failed or tv_failed_on_ops):
        return
    facts = ops.facts if ops is not None else {}
    loader_error = facts.get("loader_error")
    loader_cause = facts.get("loader_cause") or {}
    visible = load_message(report, "torchvision") if tv_failed_on_ops else load_message(report, "torchvision.ops")
    if loader_error:
        title = f"torchvision's compiled ops do not load: {loader_error.strip().splitlines()[0][:200]}"
    else:
        title = f"torchvision's compiled ops do not load ({visible[:160]})"
    detail = _explain_loader(loader_cause, report)
    if not loader_error:
        detail = (detail + " " if detail else "") + ("The loader's own message was not captured (the probe "
                                                     "could not load the ops library directly).")
    yield finding(OPS, title, detail=detail.strip(),
                  evidence={"component": "torchvision.ops" if ops_failed else "torchvision",
                            "visible_error": visible, "loader_error": loader_error,
                            "loader_cause": loader_cause.get("kind"), "library": facts.get("library"),
                            "ext_files": facts.get("ext_files")},
                  fixes=_tv_fix(report, tables))


@check(VARIANT)
def torchvision_cuda_variant(report: Report, tables: Tables) -> Iterable[Finding]:
    tv = _tv_version(report)
    ver = torch_version(report)
    if tv is None or ver is None:
        return
    tv_cuda = tables_query.local_cuda(tv)
    t_cuda = torch_cuda(report)
    if tv_cuda is None:
        return  # a +cpu torchvision, or no local tag: nothing to compare
    if t_cuda is None:
        problem = f"torchvision {tv} is a CUDA {tv_cuda} build, but torch {ver} is CPU-only"
    elif t_cuda.split(".")[0] != tv_cuda.split(".")[0]:
        problem = f"torchvision {tv} is built for CUDA {tv_cuda}, torch {ver} for CUDA {t_cuda}"
    else:
        return
    yield finding(VARIANT, problem, evidence={"torchvision": tv, "torch": ver, "torchvision_cuda": tv_cuda,
                                              "torch_cuda": t_cuda},
                  fixes=_tv_fix(report, tables))
