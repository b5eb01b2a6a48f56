"""Gather facts: the machine, the GPU, the toolkit, and one target Python environment.

The probe never judges. It returns a Report with no findings; checks add those.
"""

from __future__ import annotations

import datetime
import os
import threading
from typing import Any, Callable, Optional, Sequence, Union

from envdoctor import __version__
from envdoctor.errors import UsageError
from envdoctor.facts import Component, CudaToolkit, Gpu, Host, LoadProbes, LoadResult, Package, PythonEnv, Report
from envdoctor.probe import target as target_mod
from envdoctor.probe.exitcodes import describe_exit
from envdoctor.probe.gpu import probe_gpu
from envdoctor.probe.host import newest_glibcxx, probe_host
from envdoctor.probe.pip_cache import probe_pip_cache
from envdoctor.probe.loads import (  # noqa: F401 - public
    LOAD_SOURCES, LoadRun, apply_loads, load_module, statement_results)
from envdoctor.probe.held import HeldProbe
from envdoctor.probe.layout import TargetInfo
from envdoctor.probe.target import OLD_PYTHON_EXIT, Target
from envdoctor.probe.ops_verify import verify_ops  # noqa: F401 - public (fix's verification)
from envdoctor.probe.toolkit import probe_toolkit

# Environment variables that matter for deep-learning set-ups. Nothing else is read
# into the report (PATH is reduced to its CUDA entries).
ENV_ALLOW = (
    "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "TORCH_CUDA_ARCH_LIST", "PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT",
    "PIP_NO_CACHE_DIR", "MMCV_WITH_OPS", "FORCE_CUDA", "MAX_JOBS", "CUDA_LAUNCH_BLOCKING",
    "TORCH_USE_CUDA_DSA", "ENVDOCTOR_COMPAT", "NVTOOLSEXT_PATH",
)

Progress = Callable[[str], None]
STARTUP_MARK = "ENVDOCTOR-STATIC-START"  # scripts/static_facts.py writes it first on stderr
STARTUP_STDERR_MAX = 6000
# NVML, nvidia-smi and nvcc run beside the imports; a hung driver tool must not hold the report.
SIDE_PROBE_TIMEOUT = 20.0


class Holder:
    """fix's before-probe, kept for its verification probe (collect_verified's `hold`)."""

    def __init__(self) -> None:
        self.loads: Optional[LoadRun] = None

    def warm(self, statements: list[str], avoid: list[str]) -> bool:
        """The held process imports, while the install runs, what `statements` will need from other packages
        (probe/held.py); False: nothing is held."""
        held = self.loads.held if self.loads is not None else None
        return held is not None and held.warm(statements, avoid)

    def close(self) -> None:
        if self.loads is not None and self.loads.held is not None:
            self.loads.held.close()
        self.loads = None


def environment_facts() -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    # torch's __init__ on Windows adds %CUDA_PATH_Vxx_y%\bin (binary/windll.py reads them back)
    env.update({k: v for k, v in os.environ.items() if k.upper().startswith("CUDA_PATH_V")})
    cuda_path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if "cuda" in p.lower()]
    if cuda_path:
        env["PATH(cuda entries)"] = os.pathsep.join(cuda_path)
    return env


def _run_checked(target: Target, script: str, timeout: float) -> target_mod.ScriptRun:
    """Run a light probe script in the target; one that cannot run it (an old Python, a broken
    interpreter) is a usage error (exit 2), said in one line. The run has its data."""
    run = target_mod.run_script(target, script, [], timeout)
    if run.returncode == OLD_PYTHON_EXIT and "ENVDOCTOR-OLD-PYTHON" in run.stderr:
        version = run.stderr.split("ENVDOCTOR-OLD-PYTHON", 1)[1].split()[0]
        raise UsageError(
            f"{target.executable} is Python {version}: envdoctor probes Python 3.6 and newer "
            "(torch, torchvision and mmcv have not supported Python 2 since 2019)"
        )
    if run.data is None:
        if run.timed_out:
            why = f"no answer within {timeout:g} s"
        elif run.signal:
            why = f"it was killed by {run.signal} at start-up"
        else:
            why = f"exit {describe_exit(run.returncode)}"  # on Windows a crash is an NTSTATUS code
        last = [line for line in run.stderr.strip().splitlines() if line.strip()][-1:] or [""]
        hint = f": {last[0].strip()[:200]}" if last[0] else ""
        raise UsageError(f"{target.executable} did not run the probe ({why}); is it a working Python "
                         f"interpreter?{hint}")
    return run


def resolve_target(python: Optional[str]) -> Target:
    """The interpreter to probe: --python PATH, else the active venv / conda env, else `python` on PATH."""
    return target_mod.resolve(python)


def target_layout(target: Target, timeout: float = 60.0) -> TargetInfo:
    """prefix, install paths, markers, user scheme and pip of the target (scripts/target_layout.py)."""
    data = _run_checked(target, "target_layout.py", timeout).data
    assert data is not None
    return TargetInfo.from_data(target.executable, data)


def probe_static(target: Target, timeout: float) -> dict[str, Any]:
    """Run static_facts.py in the target; a target that cannot run it is a usage error (exit 2)."""
    run = _run_checked(target, "static_facts.py", timeout)
    data, stderr = run.data, run.stderr
    assert data is not None
    for problem in data.get("path_problems", []):
        if problem.get("site_packages") and problem.get("under_prefix"):
            raise UsageError(f"cannot read the site-packages of {target.executable}: {problem['path']} is "
                             f"{_describe_problem(problem)}")
    found = data.get("startup")
    startup: dict[str, Any] = found if isinstance(found, dict) else {}
    if STARTUP_MARK in stderr:
        startup["stderr"] = stderr.split(STARTUP_MARK, 1)[0][-STARTUP_STDERR_MAX:]
    data["startup"] = startup
    return data


def _describe_problem(problem: dict[str, Any]) -> str:
    state = problem.get("state")
    if state == "broken-symlink":
        return f"a broken symbolic link (to {problem.get('target')})"
    if state == "not-a-directory":
        return "not a directory"
    return f"unreadable ({problem.get('error') or 'errno %s' % problem.get('errno')})"


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
        selection_notes=list(target.notes),
        startup=data.get("startup") or {},
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
            missing_files=d.get("missing_paths", []),
            shadowed_locations=d.get("shadowed_locations", []),
        )
    return out


def static_components(data: dict[str, Any], pkgs: dict[str, Package]) -> dict[str, Component]:
    """torch, torchvision (+ .ops), mmcv (+ ._ext) as the files say, before anything is imported."""
    comps: dict[str, Component] = {}
    for name, c in data["components"].items():
        owners = c.get("distributions", [])
        ver_py = c.get("version_py") or {}
        meta_version = pkgs[_norm(owners[0])].version if owners and _norm(owners[0]) in pkgs else None
        facts: dict[str, Any] = {
            # every copy on sys.path, first one wins: a user-site torch shadowing the env's shows here
            "package_dirs": c.get("package_dirs", []),
            "metadata_version": meta_version,
        }
        if ver_py:
            facts["version_py"] = ver_py
        if "ext_files" in c:
            facts["ext_files"] = c["ext_files"]
        if owners:
            facts["distributions"] = owners
            facts["owners"] = c.get("owners", [])
        comps[name] = Component(
            name=name,
            installed=c.get("installed", False),
            version=ver_py.get("__version__") or meta_version,
            distribution=owners[0] if owners else None,
            location=c.get("location"),
            facts=facts,
        )
    if "torchvision" in comps:
        tv = comps["torchvision"]
        comps["torchvision.ops"] = Component(
            name="torchvision.ops", installed=tv.installed, version=tv.version, distribution=tv.distribution,
            location=tv.location, facts={"ext_files": tv.facts.get("ext_files", [])},
        )
    if "mmcv" in comps:
        m = comps["mmcv"]
        ext_record = [e for o in m.facts.get("owners", []) for e in o.get("ext_in_record", [])]
        comps["mmcv._ext"] = Component(
            name="mmcv._ext", installed=bool(m.facts.get("ext_files")), version=m.version,
            distribution=m.distribution, location=m.location,
            facts={"ext_files": m.facts.get("ext_files", []), "in_record": ext_record},
        )
    return comps


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def path_notes(data: dict[str, Any]) -> list[str]:
    """sys.path entries other than the env's own site-packages that cannot be read (facts, not fatal)."""
    out = []
    for p in data.get("path_problems", []):
        if not (p.get("site_packages") and p.get("under_prefix")):
            out.append(f"sys.path entry {p['path']} is {_describe_problem(p)}")
    return out


def _in_thread(fn: Callable[[], Any], default: Any, timeout: float, errors: list[str], what: str
               ) -> Callable[[], Any]:
    """Start fn in a daemon thread; the returned getter waits at most `timeout` s for its value."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # a side probe must never take the report down
            box["error"] = f"{what}: {type(exc).__name__}: {exc}"

    t = threading.Thread(target=run, name=f"envdoctor-{what}", daemon=True)
    t.start()

    def get() -> Any:
        t.join(timeout)
        if t.is_alive():
            errors.append(f"{what}: no answer within {timeout:g} s")
            return default
        if "error" in box:
            errors.append(box["error"])
            return default
        return box["value"]

    return get


def collect(python: Union[Target, str, None] = None, quick: bool = False, timeout: float = 60.0,
            progress: Optional[Progress] = None, fork: Optional[bool] = None,
            started: Optional[Callable[[], None]] = None) -> Report:
    """Probe the machine and the target environment; a Report without findings.

    `python`: a Target already resolved (the pipeline resolves once), else what --python said.
    The load probes start first and run while the static probe, the host, GPU and
    toolkit probes do their (short) work, so the wall time is about that of
    `import torch` + the slowest dependent import. `started()` is called once the target is
    resolved and its probe processes are starting: the caller's own work can begin then without
    delaying them.
    """
    return collect_verified(python, (), quick=quick, timeout=timeout, progress=progress, fork=fork,
                            started=started)[0]


def collect_verified(python: Union[Target, str, None], statements: Sequence[str], quick: bool = False,
                     timeout: float = 60.0, progress: Optional[Progress] = None, fork: Optional[bool] = None,
                     started: Optional[Callable[[], None]] = None, hold: Optional[Holder] = None
                     ) -> tuple[Report, dict[str, LoadResult]]:
    """collect(), and each statement (fix's verify imports) run in the same probe: on Linux a child forked
    after `import torch` beside the components' children, elsewhere a process of its own. A failed
    statement is a LoadResult like a failed import (its status, error, the stack of a crash or hang).

    `hold` (fix): a probe run of this holder that still holds its `import torch` forks this probe's
    dependent children from it (held.py says when that is a fresh process's equal; else this probe starts
    afresh); a holder with none gets this probe's, held for the next call. The caller closes the holder."""
    tgt = python if isinstance(python, Target) else target_mod.resolve(python)
    try:
        return _collect(tgt, quick, timeout, progress, fork, list(statements), started, hold)
    except BaseException:
        # Ctrl-C (or any error) anywhere: no probe process may outlive us, no scratch directory may stay
        target_mod.abort_all()
        raise


def _collect(tgt: Target, quick: bool, timeout: float, progress: Optional[Progress], fork: Optional[bool],
             statements: list[str], started: Optional[Callable[[], None]] = None, hold: Optional[Holder] = None
             ) -> tuple[Report, dict[str, LoadResult]]:
    created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    errors: list[str] = []
    verified: dict[str, LoadResult] = {}
    loads, reused = None, False
    if not quick and hold is not None and hold.loads is not None:
        reused = hold.loads.again(statements)
        loads = hold.loads if reused else None
    if not quick and loads is None:
        held = None
        if hold is not None:
            hold.close()
            hold.loads, held = None, HeldProbe()
        loads = LoadRun(tgt, timeout, fork=fork, verify=statements, held=held)
        if hold is not None and loads.held is not None:
            hold.loads = loads
    if started is not None:
        started()
    if not quick:
        # NVML, nvidia-smi, nvcc: off the critical path (quick mode runs none of them)
        gpu_get = _in_thread(probe_gpu, Gpu(notes=["not probed: timed out"]), SIDE_PROBE_TIMEOUT, errors, "gpu")
        tk_get = _in_thread(probe_toolkit, CudaToolkit(), SIDE_PROBE_TIMEOUT, errors, "cuda toolkit")
        # locally built mmcv wheels pip would reuse (ED406): a walk of pip's cache, beside the loads
        cache_get = _in_thread(probe_pip_cache, None, SIDE_PROBE_TIMEOUT, errors, "pip cache")
    static = probe_static(tgt, timeout)  # a bad target raises; collect() then ends the load probes
    python = python_env(tgt, static)
    pkgs = packages(static)
    components = static_components(static, pkgs)
    host = probe_host(python.prefix)
    if quick:
        for comp in components.values():
            comp.load = LoadResult(status="skipped", note="not tried: --quick")
        report = Report(envdoctor=__version__, created=created, mode="quick", host=host, python=python,
                        environment=environment_facts(), packages=pkgs, components=components,
                        probe_errors=path_notes(static) + errors)
    else:
        assert loads is not None
        again = loads.wait_again() if reused else None
        if reused and again is None:  # the install changed what the held process had loaded: afresh
            reused, loads = False, LoadRun(tgt, timeout, fork=fork, verify=statements)
            if hold is not None:
                hold.loads = None
        outcomes = again if again is not None else loads.wait(progress)
        apply_loads(components, outcomes)
        verified = statement_results(statements, outcomes)
        _libstdcxx_in_use(host, components)
        gpu, toolkit, pip_cache = gpu_get(), tk_get(), cache_get()
        report = Report(envdoctor=__version__, created=created, mode="full", host=host, gpu=gpu,
                        cuda_toolkit=toolkit, python=python, environment=environment_facts(), packages=pkgs,
                        components=components, probe_errors=path_notes(static) + errors,
                        load_probes=LoadProbes(fork=loads.fork, parallel=loads.parallel, reused=reused,
                                               warmed=loads.held.warmed if reused and loads.held else 0),
                        pip_cache=pip_cache)
    if not quick:
        # imported here: pyelftools/pefile are not needed to start the probes (check imports them meanwhile)
        from envdoctor.binary import attach_analysis

        attach_analysis(report)  # why a failed extension does not load, read from its file (adds its own errors)
    return report, verified


def _libstdcxx_in_use(host: Host, components: dict[str, Component]) -> None:
    """The libstdc++ that `import torch` actually mapped beats the one resolved from the search path."""
    runtime = components.get("torch", Component(name="torch")).facts.get("runtime") or {}
    mapped = [p for p in runtime.get("libstdcxx") or [] if isinstance(p, str)]
    if mapped and host.os == "Linux":
        host.libstdcxx = mapped[0]
        host.libstdcxx_source = "loaded by import torch"
        host.glibcxx = newest_glibcxx(mapped[0]) or host.glibcxx
