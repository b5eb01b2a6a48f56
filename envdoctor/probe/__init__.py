"""Gather facts: the machine, the GPU, the toolkit, and one target Python environment.

The probe never judges. It returns a Report with no findings; checks add those.
"""

from __future__ import annotations

import datetime
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from envdoctor import __version__
from envdoctor.binary import attach_analysis
from envdoctor.errors import UsageError
from envdoctor.facts import Component, LoadError, LoadResult, Package, PythonEnv, Report
from envdoctor.probe import target as target_mod
from envdoctor.probe.gpu import probe_gpu
from envdoctor.probe.host import probe_host
from envdoctor.probe.target import OLD_PYTHON_EXIT, ScriptRun, Target
from envdoctor.probe.toolkit import probe_toolkit

# Environment variables that matter for deep-learning set-ups. Nothing else is read
# into the report (PATH is reduced to its CUDA entries).
ENV_ALLOW = (
    "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "TORCH_CUDA_ARCH_LIST", "PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT",
    "PIP_NO_CACHE_DIR", "MMCV_WITH_OPS", "FORCE_CUDA", "MAX_JOBS", "CUDA_LAUNCH_BLOCKING",
    "TORCH_USE_CUDA_DSA", "ENVDOCTOR_COMPAT",
)

Progress = Callable[[str], None]

# Which probe process yields which component's load result: (process, stage name).
LOAD_SOURCES = {
    "torch": ("torch", "torch"),
    "torchvision": ("torchvision", "torchvision"),
    "torchvision.ops": ("torchvision", "torchvision.ops"),
    "mmcv": ("mmcv", "mmcv"),
    "mmcv._ext": ("mmcv", "mmcv._ext"),
}


def environment_facts() -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    cuda_path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if "cuda" in p.lower()]
    if cuda_path:
        env["PATH(cuda entries)"] = os.pathsep.join(cuda_path)
    return env


def probe_static(target: Target, timeout: float) -> dict[str, Any]:
    run = target_mod.run_script(target, "static_facts.py", [], timeout)
    if run.returncode == OLD_PYTHON_EXIT and "ENVDOCTOR-OLD-PYTHON" in run.stderr:
        version = run.stderr.split("ENVDOCTOR-OLD-PYTHON", 1)[1].split()[0]
        raise UsageError(
            f"{target.executable} is Python {version}: envdoctor probes Python 3.6 and newer "
            "(torch, torchvision and mmcv have not supported Python 2 since 2019)"
        )
    if run.data is None:
        why = "timed out" if run.timed_out else (f"killed by {run.signal}" if run.signal else f"exit {run.returncode}")
        last = run.stderr.strip().splitlines()[-1:] or [""]
        raise UsageError(f"{target.executable} did not run the probe ({why}): is it a Python interpreter? {last[0]}".strip())
    return run.data


def python_env(target: Target, data: dict[str, Any]) -> PythonEnv:
    py = data["python"]
    return PythonEnv(
        executable=py["executable"] or target.executable,
        selected_by=target.selected_by,
        version=py["version"],
        implementation=py["implementation"],
        abi_tag=py.get("abi_tag"),
        platform_tag=py.get("platform_tag"),
        prefix=py["prefix"],
        base_prefix=py["base_prefix"],
        is_venv=py["is_venv"],
        conda_prefix=py.get("conda_prefix"),
        site_packages=py.get("site_packages", []),
        user_site=py.get("user_site"),
        user_site_enabled=py.get("user_site_enabled", False),
        sys_path=py.get("sys_path", []),
    )


def packages(data: dict[str, Any]) -> dict[str, Package]:
    out = {}
    for key, d in data["distributions"].items():
        out[key] = Package(
            name=d["name"],
            version=d.get("version", ""),
            location=d.get("location", ""),
            installer=d.get("installer"),
            requested=d.get("requested"),
            direct_url=d.get("direct_url"),
            wheel_tags=d.get("wheel_tags", []),
            wheel_generator=d.get("wheel_generator"),
            top_level=d.get("top_level", []),
            compiled_files=d.get("compiled_files", 0),
            compiled_missing=d.get("compiled_missing", []),
            record_files=d.get("record_files", 0),
            record_missing=d.get("record_missing", 0),
        )
    return out


def static_components(data: dict[str, Any], pkgs: dict[str, Package]) -> dict[str, Component]:
    comps: dict[str, Component] = {}
    for name, c in data["components"].items():
        owners = c.get("distributions", [])
        ver_py = c.get("version_py") or {}
        version = ver_py.get("__version__")
        if version is None and owners:
            version = pkgs.get(_norm(owners[0]), Package(name="")).version or None
        facts: dict[str, Any] = {"package_dirs": [d["path"] for d in c.get("package_dirs", [])]}
        if ver_py:
            facts["version_py"] = ver_py
        if "ext_files" in c:
            facts["ext_files"] = c["ext_files"]
        comps[name] = Component(
            name=name,
            installed=c.get("installed", False),
            version=version,
            distribution=owners[0] if owners else None,
            location=c.get("location"),
            facts=facts,
        )
        if owners:
            comps[name].facts["distributions"] = owners
    if "torchvision" in comps:
        tv = comps["torchvision"]
        comps["torchvision.ops"] = Component(
            name="torchvision.ops", installed=tv.installed, version=tv.version, distribution=tv.distribution,
            location=tv.location, facts={"ext_files": tv.facts.get("ext_files", [])},
        )
    if "mmcv" in comps:
        m = comps["mmcv"]
        comps["mmcv._ext"] = Component(
            name="mmcv._ext", installed=bool(m.facts.get("ext_files")), version=m.version,
            distribution=m.distribution, location=m.location, facts={"ext_files": m.facts.get("ext_files", [])},
        )
    return comps


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def load_results(run: ScriptRun) -> dict[str, LoadResult]:
    """Turn one probe process's stages into load results; a dead process marks the running stage."""
    results: dict[str, LoadResult] = {}
    stages = (run.data or {}).get("stages", [])
    done = bool((run.data or {}).get("done"))
    for st in stages:
        status = st.get("status")
        err = st.get("error")
        res = LoadResult(status=status, seconds=st.get("seconds"))
        if err:
            res.error = LoadError(
                type=err.get("type", ""), message=err.get("message", ""), errno=err.get("errno"),
                winerror=err.get("winerror"), traceback=err.get("traceback"),
            )
        if status == "running" and not done:
            res.status = "timeout" if run.timed_out else "crash"
            res.seconds = run.seconds
            res.error = LoadError(
                type="Timeout" if run.timed_out else "Crash",
                message=(f"no answer within {run.seconds:.1f} s" if run.timed_out
                         else f"the process died ({run.signal or 'exit %s' % run.returncode})"),
                signal=run.signal,
                traceback=run.stderr[-4000:] or None,
            )
        res.stdout_bytes = run.stdout_bytes
        results[st["name"]] = res
    if not stages and run.data is None:
        # died before the first stage: the interpreter itself failed
        results["*"] = LoadResult(
            status="timeout" if run.timed_out else "crash", seconds=run.seconds,
            error=LoadError(type="Crash", message=f"probe did not start (exit {run.returncode})",
                            signal=run.signal, traceback=run.stderr[-4000:] or None),
        )
    return results


def probe_loads(target: Target, comps: dict[str, Component], timeout: float,
                progress: Optional[Progress] = None) -> dict[str, ScriptRun]:
    wanted = [name for name in ("torch", "torchvision", "mmcv") if comps.get(name) and comps[name].installed]
    runs: dict[str, ScriptRun] = {}
    if not wanted:
        return runs
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        futures = {name: pool.submit(target_mod.run_script, target, "load_probe.py", [name], timeout)
                   for name in wanted}
        for name, fut in futures.items():
            runs[name] = fut.result()
            if progress:
                progress(name)
    return runs


def apply_loads(comps: dict[str, Component], runs: dict[str, ScriptRun]) -> None:
    per_process = {name: load_results(run) for name, run in runs.items()}
    for comp_name, (proc, stage) in LOAD_SOURCES.items():
        comp = comps.get(comp_name)
        if comp is None:
            continue
        if proc not in runs:
            comp.load = LoadResult(status="missing" if not comp.installed else "skipped")
            continue
        results = per_process[proc]
        res = results.get(stage) or results.get("*")
        if res is None:
            # an earlier stage (e.g. import torch) failed, so this one never ran
            res = LoadResult(status="skipped")
        comp.load = res
    for proc, run in runs.items():
        facts = (run.data or {}).get("facts", {})
        if proc == "torchvision":
            direct = per_process[proc].get("torchvision._C(direct)")
            if direct is not None and direct.error is not None:
                comps["torchvision.ops"].facts["loader_error"] = direct.error.message
            if facts.get("ops_library"):
                comps["torchvision.ops"].facts["library"] = facts["ops_library"]
            comps["torchvision"].facts["runtime"] = facts
        elif proc == "mmcv":
            ext_keys = ("ext_file", "compiling_cuda_version", "compiler_version")
            comps["mmcv._ext"].facts.update({k: facts[k] for k in ext_keys if k in facts})
            comps["mmcv"].facts["runtime"] = {k: v for k, v in facts.items() if k not in ext_keys}
        elif proc in comps:
            comps[proc].facts["runtime"] = facts


def collect(python: Optional[str] = None, quick: bool = False, timeout: float = 60.0,
            progress: Optional[Progress] = None) -> Report:
    tgt = target_mod.resolve(python)
    static = probe_static(tgt, timeout)
    report = Report(
        envdoctor=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        mode="quick" if quick else "full",
    )
    report.python = python_env(tgt, static)
    report.packages = packages(static)
    report.components = static_components(static, report.packages)
    report.environment = environment_facts()
    if quick:
        # static facts only: no NVML, no subprocess beyond the static probe
        report.host = probe_host(report.python.prefix)
        for comp in report.components.values():
            comp.load = LoadResult(status="skipped")
        return report
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = pool.submit(probe_loads, tgt, report.components, timeout, progress)
        report.host = probe_host(report.python.prefix)
        report.gpu = probe_gpu()
        report.cuda_toolkit = probe_toolkit()
        runs = loads.result()
    apply_loads(report.components, runs)
    attach_analysis(report)  # why a failed extension does not load, read from its file
    return report
