"""Small readers over the Report shared by the checks (pure: no I/O)."""

from __future__ import annotations

import re
from typing import Any, Optional

from envdoctor import matrix
from envdoctor.facts import Component, Fix, Report
from envdoctor import commandline as shell

CONSUMERS = ("mmdet", "mmsegmentation", "mmdet3d", "mmpose", "mmpretrain", "mmocr", "mmaction2", "mmagic",
             "mmyolo", "mmedit", "mmrotate")
MMCV_DISTS = ("mmcv", "mmcv-full", "mmcv-lite")
FAILED = ("import_error", "crash", "timeout", "error")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def os_name(report: Report) -> str:
    s = (report.host.os or "").lower()
    if s.startswith("win"):
        return "windows"
    if s == "darwin" or s.startswith("mac"):
        return "macos"
    if not s:  # a report without host facts: guess from the platform tag
        tag = (report.python.platform_tag or "").lower()
        return "windows" if tag.startswith("win") else "macos" if tag.startswith("macos") else "linux"
    return "linux"


def python_minor(report: Report) -> str:
    return matrix.minor_of(report.python.version or "") or ""


def comp(report: Report, name: str) -> Optional[Component]:
    c = report.components.get(name)
    return c if c is not None and c.installed else None


def runtime(c: Optional[Component]) -> dict[str, Any]:
    r = c.facts.get("runtime") if c is not None else None
    return r if isinstance(r, dict) else {}


def torch_version(report: Report) -> Optional[str]:
    """The torch version as imported if the import worked, else torch/version.py, else the dist-info."""
    c = comp(report, "torch")
    if c is None:
        return None
    rt = runtime(c).get("version")
    if isinstance(rt, str) and rt and not rt.startswith("error:"):
        return rt
    vp = c.facts.get("version_py") or {}
    return vp.get("__version__") or c.version


def torch_cuda(report: Report) -> Optional[str]:
    """torch.version.cuda: "12.4", or None for a CPU (or ROCm) build."""
    c = comp(report, "torch")
    if c is None:
        return None
    rt = runtime(c)
    if "cuda" in rt and (rt["cuda"] is None or (isinstance(rt["cuda"], str) and not rt["cuda"].startswith("error:"))):
        return rt["cuda"]
    vp = c.facts.get("version_py") or {}
    if "cuda" in vp:
        return vp["cuda"]
    return matrix.local_cuda(torch_version(report))


def torch_hip(report: Report) -> Optional[str]:
    c = comp(report, "torch")
    if c is None:
        return None
    return runtime(c).get("hip") or (c.facts.get("version_py") or {}).get("hip")


def load_status(report: Report, name: str) -> Optional[str]:
    c = report.components.get(name)
    return c.load.status if c is not None and c.load is not None else None


def load_cause(report: Report, name: str) -> dict[str, Any]:
    c = report.components.get(name)
    lc = c.facts.get("load_cause") if c is not None else None
    return lc if isinstance(lc, dict) else {}


def load_message(report: Report, name: str) -> str:
    c = report.components.get(name)
    if c is None or c.load is None or c.load.error is None:
        return ""
    return (c.load.error.message.strip().splitlines() or [""])[0]


def consumers(report: Report) -> dict[str, str]:
    """Installed OpenMMLab packages that assert an mmcv range: {"mmdet": "3.3.0"}."""
    out = {}
    for key in CONSUMERS:
        pkg = report.packages.get(key)
        if pkg is not None and pkg.version:
            out[key] = pkg.version
    return out


def mmcv_dists(report: Report) -> list[str]:
    """Normalized names of every distribution that installs the `mmcv` package."""
    c = report.components.get("mmcv")
    names = [norm(d) for d in (c.facts.get("distributions") or [])] if c is not None else []
    for key in MMCV_DISTS:
        if key in report.packages and key not in names and "mmcv" in (report.packages[key].top_level or ["mmcv"]):
            names.append(key)
    return names


def pip(report: Report) -> str:
    """`<python> -m pip`, the program quoted as cmd.exe wants it on Windows, as a POSIX shell does elsewhere."""
    exe = report.python.executable or "python"
    return f"{shell.program(exe, report.host.os or '')} -m pip"


def envdoctor_fix(report: Report, strategy: str) -> str:
    exe = report.python.executable
    target = f" --python {shell.program(exe, report.host.os or '')}" if exe else ""
    return f"envdoctor fix --apply --strategy {strategy}{target}"


def wheel_fix(report: Report, choice: matrix.WheelChoice, remove: list[str], what: str) -> Fix:
    cmds = []
    if remove:
        cmds.append(f"{pip(report)} uninstall -y {' '.join(remove)}")
    cmds.append(matrix.install_command(choice, pip(report)))
    return Fix(description=f"{what}: {choice.reason} (or let envdoctor do it: "
                           f"`{envdoctor_fix(report, 'wheel')}`)",
               commands=cmds, strategy="wheel")


def compat_fix(report: Report) -> Fix:
    return Fix(
        # kept to two screen rows: the full list of served kernels is in the plan (SERVED_SUMMARY)
        description="activate envdoctor's compat layer: exact pure-PyTorch kernels (deformable conv, nms, roi_align, "
                    "…) served as mmcv._ext to your unmodified code; `envdoctor fix --undo` removes it",
        commands=[envdoctor_fix(report, "compat")], strategy="compat")


def alternative_fixes(report: Report, tables: Any, mmcv_major: Optional[int] = None, limit: int = 2) -> list[Fix]:
    """Official wheel sets that do exist on this OS (a new environment with another torch/Python)."""
    gpu = report.gpu
    fixes = []
    combos = matrix.mmcv_alternatives(tables, os_name(report), python_minor(report), mmcv_major=mmcv_major,
                                      consumers=consumers(report), driver_cuda=gpu.cuda_driver_version,
                                      cuda_wanted=bool(torch_cuda(report) or gpu.devices), limit=limit)
    for combo in combos:
        py_note = "" if combo.python == python_minor(report) else f" in a new Python {combo.python} environment"
        fixes.append(Fix(
            description=f"or change torch{py_note}: torch {combo.torch} ({matrix.cuda_tag(combo.cuda)}) + "
                        f"{combo.mmcv.package} {combo.mmcv.version} have official wheels for Python {combo.python} "
                        f"on {os_name(report)}",
            commands=combo.commands(pip(report) if not py_note else "python -m pip"), strategy="torch"))
    return fixes


def damaged(report: Report, name: str) -> bool:
    """The package is damaged on disk (classify.mark_damaged): its import cannot give a working module."""
    c = report.components.get(name)
    return c is not None and isinstance(c.facts.get("damage"), dict)


def torch_unusable(report: Report) -> bool:
    """torch is installed but does not import as a working module: nothing built on it can be judged or fixed
    (a compat layer that runs on torch cannot help) until torch itself is repaired."""
    c = comp(report, "torch")
    return c is not None and (damaged(report, "torch") or (c.load is not None and c.load.status in FAILED))


def reinstall_fix(report: Report, tables: Any, dist: str) -> Fix:
    """`pip install --force-reinstall --no-deps DIST==VERSION` (+ PyTorch's index for its wheels): puts back
    exactly the installed release's files, changes no other distribution."""
    pkg = report.packages.get(norm(dist))
    version = pkg.version if pkg is not None and pkg.version else None
    name = pkg.name if pkg is not None else dist
    spec = f"{name}=={version}" if version else name
    index = ""
    if norm(name) in ("torch", "torchvision") and version:
        cuda = matrix.local_cuda(version)
        if norm(name) == "torch":
            torch_ver = version
        else:
            torch_ver = torch_version(report) or ""
        row = matrix.pytorch_index(tables, matrix.public(torch_ver), cuda if "+" in version else torch_cuda(report))
        if row is not None:
            index = f" {row[0]} {row[1]}"
    # no strategy: `fix` would plan it as a plain `pip install NAME==VERSION`, which pip answers with
    # "already satisfied" (the dist-info is intact), so the printed command is the fix
    return Fix(description=f"reinstall {name} {version or ''} over itself (its files only, no dependencies)".replace(
        "  ", " "), commands=[f"{pip(report)} install --force-reinstall --no-deps {spec}{index}"])
