"""Run mmcv ops with the target's compiled `mmcv._ext` (scripts/verify_ops.py) and say what failed.

The compat layer is switched off for this run (ENVDOCTOR_COMPAT=0): the question is whether the
compiled library itself loads and computes, not whether something can stand in for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from envdoctor.probe.target import Target, run_script

COMPILED_SUFFIXES = (".so", ".pyd")


@dataclass
class OpsResult:
    ext_file: Optional[str]
    device: Optional[str]
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def verify_ops(python: str, ops: list[str], device: str = "auto", timeout: float = 300.0) -> OpsResult:
    """`device` "auto": on the GPU when torch sees one (a CUDA build must serve it); "cpu": a --cpu build."""
    run = run_script(Target(python, "--python"), "verify_ops.py", [device, *ops], timeout,
                     env={"ENVDOCTOR_COMPAT": "0"})
    data = run.data or {}
    res = OpsResult(data.get("ext_file"), data.get("device"), dict(data.get("ops") or {}))
    if data.get("error"):
        res.failures.append(f"`import mmcv._ext` (compat layer off): {data['error']}")
        return res
    if run.data is None or run.returncode != 0:
        why = "timed out" if run.timed_out else (run.signal or f"exit {run.returncode}")
        last = [ln for ln in run.stderr.strip().splitlines() if ln.strip()][-1:]
        res.failures.append(f"the ops check in the target {why}" + (f": {last[0][:200]}" if last else ""))
    if res.ext_file is not None and not str(res.ext_file).endswith(COMPILED_SUFFIXES):
        res.failures.append(f"mmcv._ext is {res.ext_file}, not a compiled library")
    for name in ops:
        rec = res.ops.get(name)
        if rec is None:
            res.failures.append(f"{name}: did not run")
        elif not rec.get("ok"):
            res.failures.append(f"{name} on {res.device}: {rec.get('detail')}")
    return res
