"""Before anything in the environment changes: the wheels each action installs (downloaded binary-only,
built, or the compat wheel), their missing requirements resolved, and every path they may replace."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envdoctor.facts import Report
from envdoctor.fix import backup as bk
from envdoctor.fix.compat_install import build_compat_wheel
from envdoctor.fix.footprint import dist_paths, top_path
from envdoctor.fix.pip_runner import Pip
from envdoctor.fix.plan import Action, Plan
from envdoctor.fix.result import FixFailed
from envdoctor.fix.wheels import norm_name, parse_wheel_filename, wheel_metadata, wheel_targets
from envdoctor.probe import TargetInfo

Echo = Callable[[str], None]
TORCH_FAMILY = ("torch",)


@dataclass
class Prepared:
    action: Action
    wheels: list[Path]


def _requirement_gaps(wheels: list[Path], installed: dict[str, str], markers: dict[str, str]) -> list[str]:
    """Requirements of the wheels that neither the environment nor the wheels satisfy."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    planned: dict[str, str] = {}
    metas = []
    for w in wheels:
        m = wheel_metadata(w)
        metas.append(m)
        planned[norm_name(str(m["name"]))] = str(m["version"])
    gaps: list[str] = []
    for m in metas:
        for text in m["requires"]:
            try:
                req = Requirement(text)
            except Exception:  # noqa: BLE001 - an unparsable requirement is pip's business
                continue
            if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
                continue
            name = norm_name(req.name)
            have = planned.get(name, installed.get(name))
            try:
                ok = have is not None and req.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                ok = have is not None
            if not ok:
                spec = f"{req.name}{str(req.specifier)}"
                if spec not in gaps:
                    gaps.append(spec)
    return gaps


def prepare(plan: Plan, pip: Pip, info: TargetInfo, report: Report, wheel_dir: Path, allow_torch: bool,
            echo: Echo) -> list[Prepared]:
    out: list[Prepared] = []
    installed = {k: p.version for k, p in report.packages.items()}
    for action in plan.runnable:
        for d in action.remove:
            installed.pop(norm_name(d), None)
        adir = wheel_dir / f"{len(out):02d}-{action.kind}"
        adir.mkdir(parents=True, exist_ok=True)
        if action.kind == "compat":
            echo("  building the compat wheel")
            out.append(Prepared(action, [build_compat_wheel(adir)]))
            continue
        specs = list(action.install)
        built: list[Path] = []
        if action.kind == "build":
            from envdoctor.fix.build_step import BuildFailed, build_wheel

            try:
                built = [build_wheel(action, adir, echo)]
            except BuildFailed as exc:
                raise FixFailed(f"the build did not produce a wheel; nothing was installed:\n{exc}") from None
            specs = _requirement_gaps(built, installed, info.markers)
        wheels = list(built)
        for _round in range(6):
            if not specs:
                break
            echo(f"  downloading {' '.join(specs)} (binary only, no cache)")
            res = pip.run("download", "--no-cache-dir", "--only-binary=:all:", "--no-deps", "-d", str(adir),
                          *action.sources, *specs, name="download",
                          isolated="--no-index" in action.sources)
            if not res.ok:
                raise FixFailed(f"pip could not get {' '.join(specs)}:\n{res.tail()}")
            wheels = sorted(adir.glob("*.whl"))
            specs = _requirement_gaps(wheels, installed, info.markers)
        if specs:
            raise FixFailed(f"requirements still unresolved after 6 rounds: {' '.join(specs)}")
        names = {parse_wheel_filename(w.name)[0]: w for w in wheels}
        if not allow_torch and action.kind != "torch":
            for t in TORCH_FAMILY:
                if t in names:
                    raise FixFailed(f"{' '.join(action.install)} would change {t} (to "
                                    f"{parse_wheel_filename(names[t].name)[1]}): pass --allow-torch-change to "
                                    "allow it, or --pin another version")
        for w in wheels:  # later actions see what earlier ones will have installed
            n, v = parse_wheel_filename(w.name)
            installed[n] = v
        out.append(Prepared(action, wheels))
    return out


def touched_paths(prepared: list[Prepared], report: Report, info: TargetInfo,
                  roots: bk.Roots) -> tuple[list[str], bk.Roots]:
    """Everything to back up, and the roots extended by paths outside site-packages/scripts."""
    to_back: set[str] = set()
    extra: set[str] = set()
    for p in prepared:
        names = set(norm_name(d) for d in p.action.remove)
        for w in p.wheels:
            name = parse_wheel_filename(w.name)[0]
            if name in report.packages:
                names.add(name)  # pip replaces it
            for t in wheel_targets(w, info.paths, info.windows):
                top, is_outside = top_path(os.path.normpath(str(t)), roots)
                if is_outside:
                    extra.add(top)
                if os.path.lexists(top):
                    to_back.add(top)
        for n in names:
            tops, outside = dist_paths(n, roots)
            to_back.update(t for t in tops if os.path.lexists(t))
            for o in outside:
                extra.add(o)
                if os.path.lexists(o):
                    to_back.add(o)
    new_roots = bk.Roots(roots.recursive, roots.flat, tuple(sorted(extra)), roots.exclude)
    return sorted(to_back), new_roots


def written_tops(prepared: list[Prepared], info: TargetInfo, roots: bk.Roots) -> list[str]:
    """The top-level paths the wheels write (directories, or files directly in site-packages)."""
    return sorted({top_path(os.path.normpath(str(t)), roots)[0]
                   for p in prepared for w in p.wheels for t in wheel_targets(w, info.paths, info.windows)})
