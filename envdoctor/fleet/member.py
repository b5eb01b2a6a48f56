"""The node side of `envdoctor fleet run`: `check --fleet-member RUN` writes its report as records.

Which node and task this is comes from the launcher's own environment (Slurm, Open MPI, PMI/PMIx),
else the host name; ENVDOCTOR_FLEET_NODE / ENVDOCTOR_FLEET_TASK override both (e.g. `pdsh -R exec`
with `env ENVDOCTOR_FLEET_NODE=%h`). ENVDOCTOR_FLEET_PYTHONS (paths separated by os.pathsep)
lets task N probe the N-th interpreter when --python is not given: several environments of one
node in one run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from typing import Any, Callable, Optional

from envdoctor import __version__
from envdoctor.facts import FleetTag
from envdoctor.fleet import record

_NODE_VARS = ("ENVDOCTOR_FLEET_NODE", "SLURMD_NODENAME")
_TASK_VARS = ("ENVDOCTOR_FLEET_TASK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
_SIZE_VARS = ("ENVDOCTOR_FLEET_SIZE", "SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _first(names: tuple[str, ...]) -> Optional[str]:
    for n in names:
        v = os.environ.get(n, "").strip()
        if v:
            return v
    return None


def identity() -> tuple[str, Optional[str], Optional[int]]:
    """(node, task, number of tasks in the run) as the launcher sees them."""
    node = _first(_NODE_VARS) or socket.gethostname() or "unknown"
    size = _first(_SIZE_VARS)
    return node, _first(_TASK_VARS), int(size) if size and size.isdigit() else None


def python_for_task(python: Optional[str], task: Optional[str]) -> Optional[str]:
    if python is not None:
        return python
    choices = [p for p in os.environ.get("ENVDOCTOR_FLEET_PYTHONS", "").split(os.pathsep) if p]
    if not choices:
        return None
    index = int(task) if task is not None and task.isdigit() else 0
    return choices[index % len(choices)]


def trim_for_fleet(data: dict[str, Any]) -> dict[str, Any]:
    """The report as the fleet needs it: packages the checks do not judge and load tracebacks left out.

    They are most of a report's bytes (a real environment has hundreds of packages) and of the time
    to decode 10,000 of them (bench/bench_fleet.py); the summary compares neither. What was left out
    is said in `trimmed`, as in a report trimmed for an issue. `check --format json` on the node
    still gives the whole report."""
    from envdoctor.report_diff import KEY_PACKAGES

    packages = data.get("packages") or {}
    keep = {k: v for k, v in packages.items() if KEY_PACKAGES.match(k)}
    trimmed = list(data.get("trimmed") or [])
    if len(keep) < len(packages):
        data["packages"] = keep
        data["packages_trimmed_count"] = len(packages) - len(keep)
        trimmed.append(f"packages: {len(packages) - len(keep)} not judged by the checks (envdoctor fleet)")
    tracebacks = 0
    for comp in (data.get("components") or {}).values():
        err = (comp.get("load") or {}).get("error") if isinstance(comp, dict) else None
        if isinstance(err, dict) and err.get("traceback"):
            err["traceback"] = None
            tracebacks += 1
    if tracebacks:
        trimmed.append(f"load tracebacks: {tracebacks} (envdoctor fleet)")
    if trimmed:
        data["trimmed"] = trimmed
    return data


def _write(line: str) -> None:
    # one write() per line (< PIPE_BUF): atomic on a pipe shared with other tasks
    data = line.encode()
    while data:
        data = data[os.write(1, data):]


def run_as_member(run: str, python: Optional[str], build: Callable[[Optional[str]], Any]) -> int:
    """Write hello, then the report built by build(python) (a redacted Report) or why there is none."""
    node, task, size = identity()

    def _terminated(signum: int, frame: object) -> None:
        # srun/pdsh/mpirun end a job that overran with SIGTERM: say so before going
        _write(record.error_line(run, node, task, f"terminated by signal {signal.Signals(signum).name}", 128 + signum))
        # unwinds like Ctrl-C would: the probe's own clean-up stops the interpreter it started
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread
        pass
    sys.stdout.flush()
    _write(record.hello_line(run, node, task, size, __version__))
    try:
        report = build(python_for_task(python, task))
    except KeyboardInterrupt:
        _write(record.error_line(run, node, task, "interrupted", 130))
        raise
    except Exception as exc:  # the CLI turns it into one line on stderr; the collector gets it too
        from envdoctor.errors import UsageError

        why = str(exc) if isinstance(exc, UsageError) else f"internal error: {type(exc).__name__}: {exc}"
        _write(record.error_line(run, node, task, why, 2))
        raise
    code = 1 if any(f.severity == "error" for f in report.findings) else 0
    tagged = dataclasses.replace(report, fleet=FleetTag(run=run, node=node, task=task))
    for line in record.report_lines(run, node, task, trim_for_fleet(tagged.to_dict())):
        _write(line)
    _write(record.bye_line(run, node, task, code))
    return code
