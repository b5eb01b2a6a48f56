"""The fixes the checks advise, spelled as commands for this target (pure: no I/O).

The facts are read through envdoctor.fact_readers, like everywhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from envdoctor import commandline as shell
from envdoctor import matrix
from envdoctor.fact_readers import consumers, norm, os_name, python_minor, torch_cuda, torch_version
from envdoctor.facts import Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables


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


def alternative_fixes(report: Report, tables: Tables, mmcv_major: Optional[int] = None, limit: int = 2) -> list[Fix]:
    """Official wheel sets that do exist on this OS (a new environment with another torch/Python)."""
    gpu = report.gpu
    fixes = []
    combos = matrix.mmcv_alternatives(tables, os_name(report), python_minor(report), mmcv_major=mmcv_major,
                                      consumers=consumers(report, tables), driver_cuda=gpu.cuda_driver_version,
                                      cuda_wanted=bool(torch_cuda(report) or gpu.devices), limit=limit)
    for combo in combos:
        py_note = "" if combo.python == python_minor(report) else f" in a new Python {combo.python} environment"
        fixes.append(Fix(
            description=f"or change torch{py_note}: torch {combo.torch} ({matrix.cuda_tag(combo.cuda)}) + "
                        f"{combo.mmcv.package} {combo.mmcv.version} have official wheels for Python {combo.python} "
                        f"on {os_name(report)}",
            commands=combo.commands(pip(report) if not py_note else "python -m pip"), strategy="torch"))
    return fixes


def reinstall_fix(report: Report, tables: Tables, dist: str) -> Fix:
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
