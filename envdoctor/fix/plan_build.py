"""The `build` strategy's action: compile mmcv's real `_ext` for this environment (envdoctor/build),
then install that wheel through the same transaction as the wheel strategy. Pure: the decision and
the cache lookup arrive as a BuildChoice (envdoctor.build.choice.gather), gathered before planning.

Kept apart from plan.py so that the planners of the other strategies and this one change independently.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Optional

from envdoctor.build.choice import BuildChoice
from envdoctor.build.spec import BuildSpec
from envdoctor.facts import Report
from envdoctor.fix.compat_install import COMPAT_DIST
from envdoctor.fix.pip_runner import source_args
from envdoctor.fact_readers import installed_version as _installed
from envdoctor.fix.plan import Action, Verify, _cmds, _pip, _q
from envdoctor.render.build import spec_lines

# what the verification runs in the target with the real library (probe/ops_verify.py)
VERIFY_OPS = ("nms", "roi_align", "modulated_deform_conv2d")
COMPILED_SUFFIXES = (".so", ".pyd")


def compat_serving(report: Report) -> bool:
    """The compat layer, not a compiled library, is what `import mmcv._ext` gives today."""
    ext = report.components.get("mmcv._ext")
    served = str((ext.facts.get("ext_file") if ext else None) or "")
    return _installed(report, COMPAT_DIST) is not None and not served.endswith(COMPILED_SUFFIXES)


def _build_command(spec: BuildSpec, source: Optional[str]) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(spec.build_env().items()))
    what = shlex.quote(source) if source else f"<the {spec.package}-{spec.version} sdist>"
    return (f"(envdoctor builds it, outside the environment: {env} {shlex.quote(spec.python)} -m pip wheel -v "
            f"--no-deps --no-build-isolation --no-cache-dir --no-index -w <private dir> {what})")


def build_action(report: Report, choice: BuildChoice, index_url: Optional[str], mm_dists: list[str],
                 notes: list[str], dist_names: tuple[str, ...]) -> Optional[Action]:
    """The action, printed with what will be built and why; not applied when something blocks the build."""
    spec = choice.spec
    if spec is None:
        notes.append(f"build: {choice.error}")
        return None
    py = report.python.executable
    remove = list(mm_dists)
    if _installed(report, COMPAT_DIST) is not None:
        remove.append(COMPAT_DIST)  # the real _ext replaces it: it steps aside in the same transaction
    sources = source_args(index_url)
    target = f"{spec.package}=={spec.version}"
    details = spec_lines(spec, log=None)
    if choice.cached and spec.blockers:
        details = [ln.replace("✗ cannot build:", "(would block a build, not the cached wheel):") for ln in details]
    if choice.cached:
        details.insert(1, f"  cached:     installs in seconds, no build (envdoctor's cache: {choice.cached})")
        fetch = [f"(cached build: {choice.cached})"]
    else:
        details.append(f"  log:        a build.log beside the cached wheel in {choice.cache_root} "
                       "(failed builds: <cache>/failed/); its path is printed when the build starts")
        download = _pip(py, "download", "--no-deps", "--no-binary=:all:", "--no-build-isolation", *sources, target)
        where = (f"--source {choice.source}" if choice.source
                 else f"{_q(download, report.host.os)} into a private directory")
        fetch = [f"(source: {where})", _build_command(spec, choice.source)]
    wheel = f"{spec.wheel_name}-{spec.version}-{spec.python_tag}-{spec.python_tag}-{spec.platform_tag}.whl"
    commands = _cmds([_pip(py, "uninstall", "-y", d) for d in remove], report.host.os)
    commands += fetch + _cmds([_pip(py, "install", "--no-index", "--no-deps", "--no-cache-dir", wheel)], report.host.os)
    changes = [f"removes {d} {_installed(report, d)}" + (" (the compat layer steps aside: the real mmcv._ext "
                                                          "replaces it)" if d == COMPAT_DIST else "")
               for d in remove]
    changes.append(f"installs {target} with the compiled ops built for exactly this torch (nothing else; the "
                   "build's tools never enter the environment)")
    # a cached wheel was built for exactly this key: nothing is compiled, so what blocks a build does not apply
    blockers = [] if choice.cached else list(spec.blockers)
    return Action(
        kind="build", component="mmcv",
        title=f"build {target} with compiled ops ({'CUDA + CPU' if spec.device == 'cuda' else 'CPU'} kernels) "
              f"and install it" + (" (cached)" if choice.cached else ""),
        why=f"mmcv._ext's compiled kernels for torch {spec.torch_version}, which no prebuilt wheel has: every "
            "op, not only the ones the compat layer serves",
        changes=changes, commands=commands,
        undo=f"envdoctor fix --undo --python {shlex.quote(py)} (puts back every removed or replaced file from "
             "the backup, byte for byte)",
        verify=Verify(
            description="fresh probe: `import mmcv._ext` loads the compiled library (not the compat layer); "
                        f"{', '.join(VERIFY_OPS)} run in the target "
                        + ("(on the GPU when there is one)" if spec.device == "cuda" else "(CPU kernels)"),
            components_ok=["mmcv", "mmcv._ext"], present={spec.package: spec.version},
            absent=[d for d in (*dist_names, COMPAT_DIST) if d != spec.package], ops=list(VERIFY_OPS),
            ops_device="auto" if spec.device == "cuda" else "cpu"),
        remove=remove, install=[target], sources=sources, details=details,
        build={"spec": dataclasses.asdict(spec), "cached": choice.cached, "source": choice.source,
               "cache_root": choice.cache_root},
        applies=not blockers,
        not_applied_because="; ".join(blockers) if blockers else "",
    )


def build_note(report: Report) -> str:
    """What `auto` says about the strategy it never picks (it takes minutes to an hour)."""
    py = shlex.quote(report.python.executable)
    return ("build: the compat layer serves a part of mmcv._ext's kernels, on the CPU and GPU in PyTorch; for "
            "the other ops, or mmcv's own CUDA speed, `envdoctor fix --strategy build --python "
            f"{py}` compiles mmcv's real ops for this torch (minutes to an hour; auto never starts it)")


def spec_from_action(action: Action) -> BuildSpec:
    d: dict[str, Any] = dict(action.build["spec"])
    d["requirements"] = tuple(d.get("requirements") or ())
    return BuildSpec(**d)
