"""Load probes: import torch, torchvision, mmcv (or any one module) in isolated processes.

On Linux one process of the target interpreter imports torch once and forks a
child per dependent probe (torch.cuda facts, torchvision + ops, mmcv + _ext),
each reporting through its own files; elsewhere (or with `check --no-fork`) each
probe is its own process, and each of those imports torch: as many run at once as
free memory allows (three CUDA torch imports at once exhaust a small Windows paging
file: WinError 1455). Either way a crash or hang is a *result* (status crash /
timeout, with the signal and the faulthandler stack), never an exception here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from envdoctor.facts import Component, LoadError, LoadResult
from envdoctor.probe import target as target_mod
from envdoctor.probe.exitcodes import describe_exit
from envdoctor.probe.held import HeldProbe
from envdoctor.probe.target import RunningScript, ScriptRun, Target

Progress = Callable[[str], None]

# Which probe file and stage yields each component's load result.
LOAD_SOURCES = {
    "torch": ("torch", "torch"),
    "torchvision": ("torchvision", "torchvision"),
    "torchvision.ops": ("torchvision", "torchvision.ops"),
    "mmcv": ("mmcv", "mmcv"),
    "mmcv._ext": ("mmcv", "mmcv._ext"),
}
PROBES = ("torch", "torch.cuda", "torchvision", "mmcv")
# faulthandler.dump_traceback_later(exit=True) writes this header, then exits with code 1
WATCHDOG_MARK = "Timeout ("


@dataclass
class ProbeOutcome:
    """What one probe process, or one forked child, left behind."""

    name: str
    data: Optional[dict[str, Any]]
    returncode: Optional[int]
    signal: Optional[str] = None
    timed_out: bool = False
    seconds: float = 0.0
    stderr: str = ""
    stdout_bytes: int = 0
    ended_by_parent: bool = False  # the parent process ended before this child did


def use_fork() -> bool:
    """fork after `import torch` is what torch's own DataLoader does on Linux; elsewhere use processes."""
    return sys.platform.startswith("linux")


# What one probe process that imports torch may need. A CPU torch import is ~0.4 GiB resident here
# (bench/bench_check.py); a CUDA build maps ~1 GiB more of kernels and, on Windows, commits it against
# the paging file. Conservative on purpose: a probe that waits costs seconds, one that fails costs a
# false WinError 1455 finding.
PROBE_MEMORY = 2 * 1024 ** 3


def parallel_limit(available: Optional[int] = None, wanted: int = 3, per_probe: int = PROBE_MEMORY) -> int:
    """How many torch-importing probe processes to run at once: as many as fit in free memory, at least one."""
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001 - no memory figure: all at once, as before
            return wanted
    return max(1, min(wanted, available // per_probe))


class LoadRun:
    """The load probes, started at once (so they overlap the static probe) and awaited later."""

    def __init__(self, target: Target, timeout: float, fork: Optional[bool] = None,
                 parallel: Optional[int] = None, verify: Sequence[str] = (), held: Optional[HeldProbe] = None) -> None:
        self.timeout = timeout
        self.target = target
        self.fork = use_fork() if fork is None else fork
        # fix's before-probe: its torch-importing process waits afterwards, for the verification (held.py)
        self.held = held if self.fork else None
        self.runs: dict[str, RunningScript] = {}
        self.pending: list[str] = []
        # fix's verify statements: each a probe of its own (verify-N), beside the components'
        self.statements = {verify_key(i): s for i, s in enumerate(verify)}
        if self.fork:
            # torch import (<= timeout), then the children in parallel (each <= timeout), plus slack
            self.parallel = 1
            flags = [a for s in verify for a in ("--verify", s)]
            if self.held is not None:  # and when it starts: what it loaded and changed since, it cannot stand for
                flags += ["--hold", str(time.time_ns())]
            self.runs = {"*": RunningScript(target, "load_probe.py", ["components", str(timeout), *flags],
                                            2 * timeout + 10, out_is_dir=True, stdin_pipe=self.held is not None)}
            if self.held is not None:
                self.held.attach(self.runs["*"])
        else:
            self.parallel = parallel if parallel is not None else parallel_limit()
            self.pending = ["torch", "torchvision", "mmcv", *self.statements]
            while self.pending and len(self.runs) < self.parallel:
                self._start_next()

    def _start_next(self) -> None:
        name = self.pending.pop(0)
        # each process imports torch (<= timeout) and then probes (the CUDA init, the import: <= timeout),
        # each under the probe's own watchdog, which dumps the stack first; the kill here is the backstop
        args = ["component", name, str(self.timeout)]
        if name in self.statements:  # a verify statement alone in a fresh process, as the user would run it
            args = ["statement", name, str(self.timeout), self.statements[name]]
        self.runs[name] = RunningScript(self.target, "load_probe.py", args, 2 * self.timeout + 10, out_is_dir=True)

    def abort(self) -> None:
        self.pending = []
        for run in self.runs.values():
            run.abort()

    def wait(self, progress: Optional[Progress] = None) -> dict[str, ProbeOutcome]:
        finished: dict[str, ScriptRun] = {}
        last = [""]

        def tick(_: RunningScript) -> None:
            if progress is None:
                return
            text = self.progress_text()
            if text != last[0]:
                last[0] = text
                progress(text)

        order = list(self.runs) + list(self.pending)
        for key in order:
            if key not in self.runs:
                self._start_next()
            if key == "*" and self.held is not None:
                finished[key] = self.held.wait_first(tick if progress else None)
                continue
            finished[key] = self.runs[key].wait(tick if progress else None)
            while self.pending and sum(1 for k in self.runs if k not in finished) < self.parallel:
                self._start_next()  # a slot is free: the next probe starts while this one is read
        if progress:
            progress(self.progress_text(finished))
        return self.outcomes(finished)

    def again(self, verify: Sequence[str]) -> bool:
        """fix's verification: the dependent probes once more, forked from the held `import torch` (held.py).
        False: no process is held (the caller probes afresh)."""
        if self.held is None or not self.held.next_round(list(verify)):
            return False
        self.statements = {verify_key(i): s for i, s in enumerate(verify)}
        return True

    def wait_again(self) -> Optional[dict[str, ProbeOutcome]]:
        """The round `again` asked for; None: the held process could not stand for a fresh one (probe afresh)."""
        assert self.held is not None
        run = self.held.wait_round()
        return None if run is None else self.outcomes({"*": run})

    def progress_text(self, finished: Optional[dict[str, ScriptRun]] = None) -> str:
        """"torch ✓ 1.4 s · torchvision … · mmcv …" from the probes' result files as they are now."""
        parts = []
        for name in ("torch", "torchvision", "mmcv"):
            data = None
            if finished is not None:
                src = finished.get("*") or finished.get(name)
                data = src.files.get(f"{name}.json") if src else None
            else:
                run = self.runs.get("*") or self.runs.get(name)
                data = run.read_json(f"{name}.json") if run else None
            stages = [s for s in (data or {}).get("stages", []) if s.get("name") == name]
            if not stages:
                parts.append(f"{name} …")
                continue
            st = stages[0]
            status = st.get("status")
            if status == "running":
                parts.append(f"{name} …")
            elif status == "ok":
                parts.append(f"{name} ok {st.get('seconds', 0):.1f} s")
            else:
                parts.append(f"{name} {status}")
        return "importing in isolated processes: " + " · ".join(parts)

    def outcomes(self, finished: dict[str, ScriptRun]) -> dict[str, ProbeOutcome]:
        out: dict[str, ProbeOutcome] = {}
        if "*" in finished:
            run = finished["*"]
            out["torch"] = _outcome("torch", run.files.get("torch.json"), run)
            children = run.files.get("children.json") or {}
            for name in PROBES[1:] + tuple(self.statements):
                data = run.files.get(f"{name}.json")
                if data is None:
                    continue
                child = children.get(name)
                stderr = run.files.get(f"{name}.stderr", "") or ""
                if child is None or "returncode" not in child:
                    # the parent ended (killed at the overall deadline) before this child did
                    out[name] = ProbeOutcome(name, data, None, timed_out=run.timed_out, seconds=run.seconds,
                                             stderr=stderr, ended_by_parent=True)
                    continue
                rc = child.get("returncode")
                out[name] = ProbeOutcome(
                    name, data, rc, signal=child.get("signal"),
                    timed_out=bool(child.get("timed_out")) or (rc == 1 and WATCHDOG_MARK in stderr),
                    seconds=float(child.get("seconds") or 0.0), stderr=stderr,
                    stdout_bytes=int(run.files.get(f"{name}.stdout", 0) or 0),
                )
        else:
            for name, run in finished.items():
                out[name] = _outcome(name, run.files.get(f"{name}.json"), run)
        return out


def verify_key(index: int) -> str:
    return f"verify-{index}"


def statement_results(statements: Sequence[str], outcomes: dict[str, ProbeOutcome]) -> dict[str, LoadResult]:
    """How each of fix's verify statements went (run by LoadRun(verify=...)), by statement."""
    out: dict[str, LoadResult] = {}
    torch = outcomes.get("torch")
    for i, stmt in enumerate(statements):
        outcome = outcomes.get(verify_key(i))
        if outcome is None:
            why = ("not tried: the probe process died while importing torch"
                   if torch is not None and not (torch.data or {}).get("done") else "not tried: the probe did not run")
            out[stmt] = LoadResult(status="skipped", note=why)
            continue
        results = stage_results(outcome)
        out[stmt] = results.get(stmt) or results.get("*") or LoadResult(
            status="error", error=LoadError(type="ProbeError", message="the probe left no result",
                                            traceback=outcome.stderr[-4000:] or None))
    return out


def _outcome(name: str, data: Optional[dict[str, Any]], run: ScriptRun) -> ProbeOutcome:
    timed_out = run.timed_out or (run.returncode == 1 and WATCHDOG_MARK in run.stderr)
    return ProbeOutcome(name, data, run.returncode, signal=run.signal, timed_out=timed_out, seconds=run.seconds,
                        stderr=run.stderr, stdout_bytes=run.stdout_bytes)


def stage_results(outcome: ProbeOutcome) -> dict[str, LoadResult]:
    """Each stage of one probe as a LoadResult; the stage that was running when the process died
    is the one that crashed (or hung)."""
    results: dict[str, LoadResult] = {}
    data = outcome.data or {}
    done = bool(data.get("done"))
    for st in data.get("stages", []):
        status = st.get("status")
        res = LoadResult(status=status, seconds=st.get("seconds"))
        err = st.get("error")
        if err:
            res.error = _load_error(err)
        if status == "running" and not done:
            res = _died(outcome, st)
        elif status == "interrupted":  # a Ctrl-C reached the probe: it says nothing about the import
            res = LoadResult(status="error", seconds=st.get("seconds"),
                             error=LoadError(type="Interrupted", message="a Ctrl-C reached the probe process "
                                             "during this import, which ended it; not the import's result"))
        res.stdout_bytes = outcome.stdout_bytes
        results[st["name"]] = res
    if not data.get("stages") and not done:
        # died before its first stage: the interpreter itself failed to run the probe
        results["*"] = _died(outcome, {})
    return results


def _load_error(err: dict[str, Any]) -> LoadError:
    message = err.get("message", "")
    tb = err.get("traceback")
    chain = err.get("chain") or []
    if chain and tb is None:
        tb = "\n".join(chain)
    return LoadError(type=err.get("type", ""), message=message, errno=err.get("errno"),
                     winerror=err.get("winerror"), traceback=tb)


def _died(outcome: ProbeOutcome, stage: dict[str, Any]) -> LoadResult:
    started, seconds = stage.get("started"), outcome.seconds
    if outcome.timed_out:
        status, etype = "timeout", "Timeout"
        message = "no answer within the timeout; the stack of the hang is in the traceback"
    elif outcome.ended_by_parent:
        status, etype, message = "error", "ProbeError", "the probe's parent process ended before this import finished"
    elif outcome.signal:
        status, etype, message = "crash", "Crash", f"the process was killed by {outcome.signal}"
    else:
        status, etype = "crash", "Exit"
        message = f"the process exited with {describe_exit(outcome.returncode)} during the import"
    if started is None:
        seconds = outcome.seconds
    return LoadResult(status=status, seconds=round(seconds, 3),
                      error=LoadError(type=etype, message=message, signal=outcome.signal,
                                      traceback=outcome.stderr[-6000:].strip() or None))


def stage_modules(outcome: ProbeOutcome) -> dict[str, dict[str, Any]]:
    """What each successful import stage yielded (file, namespace or not, __version__), by stage name."""
    out = {}
    for st in (outcome.data or {}).get("stages", []):
        if isinstance(st, dict) and isinstance(st.get("module"), dict) and isinstance(st.get("name"), str):
            out[st["name"]] = st["module"]
    return out


def apply_loads(comps: dict[str, Component], outcomes: dict[str, ProbeOutcome]) -> None:
    """Put each component's load result and runtime facts on it."""
    per_probe = {name: stage_results(o) for name, o in outcomes.items()}
    for comp_name, (probe, stage) in LOAD_SOURCES.items():
        comp = comps.get(comp_name)
        if comp is None:
            continue
        if probe in outcomes:
            shape = stage_modules(outcomes[probe]).get(stage)
            if shape is not None:
                comp.facts["module"] = shape
        results = per_probe.get(probe)
        if results is None and not comp.installed:
            comp.load = LoadResult(status="missing", seconds=0.0)
            continue
        if results is None:
            if probe != "torch" and outcomes.get("torch") and not (outcomes["torch"].data or {}).get("done"):
                why = "not tried: the probe process died while importing torch"
            else:
                why = "not tried: the probe did not run"
            comp.load = LoadResult(status="skipped", note=why)
            continue
        res = results.get(stage) or results.get("*")
        parent = results.get(probe)
        if res is None and parent is not None and parent.status == "missing":
            res = LoadResult(status="missing", seconds=0.0)  # mmcv._ext when mmcv is not installed at all
        if res is None:
            res = LoadResult(status="skipped", note=_skipped_note(comp_name, per_probe, results))
        comp.load = res
    _runtime_facts(comps, outcomes, per_probe)


def _skipped_note(comp_name: str, per_probe: dict[str, dict[str, LoadResult]],
                  own: dict[str, LoadResult]) -> str:
    torch = own.get("torch")
    if torch is not None and torch.status in ("crash", "timeout"):
        # the process imports torch first (as real use does) and died there
        return f"not tried: `import torch` ended in a {torch.status} first"
    if comp_name == "torchvision.ops":
        tv = per_probe.get("torchvision", {}).get("torchvision")
        if tv is not None and tv.status != "ok":
            return "not tried: `import torchvision` failed"
    return "not tried"


def _runtime_facts(comps: dict[str, Component], outcomes: dict[str, ProbeOutcome],
                   per_probe: dict[str, dict[str, LoadResult]]) -> None:
    torch = comps.get("torch")
    if torch is not None and "torch" in outcomes:
        facts = dict((outcomes["torch"].data or {}).get("facts", {}))
        cuda = outcomes.get("torch.cuda")
        if cuda is not None:
            facts.update((cuda.data or {}).get("facts", {}))
            res = stage_results(cuda).get("torch.cuda")
            if res is not None and res.status != "ok":
                # torch.cuda.is_available() itself crashed or hung: that is a fact too
                facts["cuda_probe"] = {"status": res.status, "message": res.error.message if res.error else "",
                                       "signal": res.error.signal if res.error else None}
        else:
            res = per_probe.get("torch", {}).get("torch.cuda")
            if res is not None and res.status != "ok":
                facts["cuda_probe"] = {"status": res.status, "message": res.error.message if res.error else ""}
        if facts:
            torch.facts["runtime"] = facts
    tv_out = outcomes.get("torchvision")
    if tv_out is not None and "torchvision" in comps:
        facts = dict((tv_out.data or {}).get("facts", {}))
        ops = comps.get("torchvision.ops")
        direct = per_probe["torchvision"].get("torchvision._C(direct)")
        if ops is not None:
            if facts.get("ops_library"):
                ops.facts["library"] = facts.pop("ops_library")
            if direct is not None:
                ops.facts["direct_load"] = {"status": direct.status,
                                            "message": direct.error.message if direct.error else None}
                if direct.error is not None:
                    ops.facts["loader_error"] = direct.error.message
                if ops.load is None or ops.load.status == "skipped":
                    # torchvision itself did not import: the direct load is the only word on the ops
                    ops.load = direct
                    ops.facts["loaded_directly"] = True
        comps["torchvision"].facts["runtime"] = facts
    mm_out = outcomes.get("mmcv")
    if mm_out is not None and "mmcv" in comps:
        facts = dict((mm_out.data or {}).get("facts", {}))
        ext_keys = ("ext_file", "compiling_cuda_version", "compiler_version", "compat")
        if "mmcv._ext" in comps:
            comps["mmcv._ext"].facts.update({k: facts[k] for k in ext_keys if k in facts})
        comps["mmcv"].facts["runtime"] = {k: v for k, v in facts.items() if k not in ext_keys}


def load_module(target: Union[Target, str], module: str, extra_sys_path: Sequence[str] = (),
                timeout: float = 30.0) -> LoadResult:
    """`import MODULE` in a fresh process of the target interpreter; how it went, as a LoadResult.

    `target` is a Target or an interpreter path; `extra_sys_path` entries go first on sys.path.
    A crash (signal + faulthandler stack) or a hang (killed after `timeout` s, with the stack
    of the hang) is a result, never an exception.
    """
    if isinstance(target, str):
        target = Target(target, "--python")
    run = target_mod.run_script(target, "load_probe.py", ["module", module, str(timeout), *extra_sys_path],
                                timeout + 10, out_is_dir=True)
    outcome = _outcome("module", run.files.get("module.json"), run)
    results = stage_results(outcome)
    res = results.get(module) or results.get("*")
    if res is None:
        res = LoadResult(status="error", error=LoadError(type="ProbeError", message="the probe left no result",
                                                         traceback=run.stderr[-4000:] or None))
    return res
