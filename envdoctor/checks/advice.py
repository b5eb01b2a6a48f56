"""The fixes the checks advise, each one spelled as commands for this target, and, where `envdoctor fix` can
carry it out, as the FixChoice it will execute (envdoctor/fix_choice.py). Pure: no I/O.

A choice is decided here once, from the rule tables; `check` prints `choice.commands()` and `fix`'s planner
executes the same object. The facts are read through envdoctor.fact_readers, like everywhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from envdoctor import commandline as shell
from envdoctor import tables_query
from envdoctor.fact_readers import (consumers, damaged, mmcv_dists, mmcv_wheel, norm, os_name, python_minor,
                                    torch_cuda, torch_unusable, torch_version)
from envdoctor.facts import Fix, Report
from envdoctor.fix_choice import ConsumerRange, FixChoice, PipInstall

if TYPE_CHECKING:
    from envdoctor.rules import Tables

# pip arguments of a table's wheel choice that every choice's install has anyway (fix_choice.PIP_INSTALL)
_ALWAYS = ("--no-cache-dir", "--only-binary")


def pip(report: Report) -> str:
    """`<python> -m pip`, the program quoted as cmd.exe wants it on Windows, as a POSIX shell does elsewhere."""
    exe = report.python.executable or "python"
    return f"{shell.program(exe, report.host.os or '')} -m pip"


def envdoctor_fix(report: Report, strategy: str) -> str:
    exe = report.python.executable
    target = f" --python {shell.program(exe, report.host.os or '')}" if exe else ""
    return f"envdoctor fix --apply --strategy {strategy}{target}"


def _sources(wheel: tables_query.WheelChoice) -> tuple[str, ...]:
    """Where the table's wheel comes from, as pip arguments (an index, a find-links page, an extra index)."""
    out: list[str] = []
    if wheel.index_url:
        out += ["--index-url", wheel.index_url]
    if wheel.find_links:
        out += ["--find-links", wheel.find_links]
    return tuple(out) + tuple(a for a in wheel.pip_args if not a.startswith(_ALWAYS))


def _ranges(report: Report, tables: Tables, mmcv_version: str) -> tuple[ConsumerRange, ...]:
    """The installed consumers' mmcv ranges that `mmcv_version` is inside (the tables' [[mmcv_consumer]] rows)."""
    rows = tables_query.consumer_ranges(tables, consumers(report, tables))
    return tuple(ConsumerRange(r["package"], r["installed"], r["mmcv"], r.get("source", "")) for r in rows
                 if tables_query.in_spec(mmcv_version, r["mmcv"]))


def _target(report: Report) -> tuple[str, str]:
    return report.python.executable, os_name(report)


def mmcv_wheel_choice(report: Report, tables: Tables, series: Optional[int] = None) -> Optional[FixChoice]:
    """The official mmcv wheel for these facts (fact_readers.mmcv_wheel), every installed mmcv flavour removed
    first; None when no wheel exists."""
    wheel = mmcv_wheel(report, tables, series)
    if wheel is None:
        return None
    python, os_ = _target(report)
    return FixChoice(strategy="wheel", component="mmcv", python=python, os=os_,
                     remove=tuple(mmcv_dists(report, tables)),
                     installs=(PipInstall((f"{wheel.package}=={wheel.version}",), _sources(wheel)),),
                     reason=wheel.reason, source=wheel.source, satisfies=_ranges(report, tables, wheel.version))


def torchvision_choice(report: Report, tables: Tables) -> Optional[FixChoice]:
    """The torchvision that pairs with the installed torch, from the index of torch's CUDA variant, replacing
    the installed one (same version, other build included); None when the tables know none."""
    ver = torch_version(report)
    wheel = tables_query.torchvision_for(tables, ver, torch_cuda(report), python_minor(report)) if ver else None
    if wheel is None:
        return None
    python, os_ = _target(report)
    return FixChoice(strategy="wheel", component="torchvision", python=python, os=os_,
                     installs=(PipInstall((f"torchvision=={wheel.version}",), _sources(wheel), replace=True),),
                     reason=wheel.reason, source=wheel.source)


def wheel_fix(report: Report, choice: FixChoice, what: str) -> Fix:
    return Fix(description=f"{what}: {choice.reason} (or let envdoctor do it: "
                           f"`{envdoctor_fix(report, 'wheel')}`)",
               commands=choice.commands(), strategy="wheel", choice=choice)


def compat_fix(report: Report) -> Fix:
    python, os_ = _target(report)
    choice = FixChoice(strategy="compat", component="mmcv", python=python, os=os_,
                       reason="no prebuilt mmcv wheel fits: envdoctor's compat layer serves mmcv._ext")
    return Fix(
        # kept to two screen rows: the full list of served kernels is in the plan (SERVED_SUMMARY)
        description="activate envdoctor's compat layer: exact pure-PyTorch kernels (deformable conv, nms, roi_align, "
                    "…) served as mmcv._ext to your unmodified code; `envdoctor fix --undo` removes it",
        commands=choice.commands(), strategy="compat", choice=choice)


def _torch_sources(option: str, url: str) -> tuple[str, ...]:
    return ("--find-links" if option == "-f" else option, url)


def torch_choice(report: Report, tables: Optional[Tables], component: str, version: str, cuda: Optional[str],
                 reason: str, with_torchvision: bool = False, dependencies: bool = False) -> FixChoice:
    """torch `version`'s build for `cuda` (None: the CPU build), from PyTorch's index of that variant (the
    [[pytorch_index]] row), with the torchvision that pairs with it when asked; no version (or no tables): the
    latest torch from the default index. The pins carry the variant's local tag (+cu118, +cpu) where PyTorch's
    wheels have one, so pip replaces another build of the same version and brings the new build's
    dependencies (nvidia-*); a pin equal to what is installed (the same build again, or an untagged pin of its
    version) replaces only those distributions' files (REPLACE), unless `dependencies`: then it is installed as
    is, so pip installs the requirements of it that are missing (nvidia-* wheels removed or never installed)."""
    python, os_ = _target(report)
    if not version or tables is None:
        return FixChoice(strategy="torch", component=component, python=python, os=os_,
                         installs=(PipInstall(("torch",)),), reason=reason)
    pub = tables_query.public(version)
    idx = tables_query.pytorch_index(tables, pub, cuda)
    tag = tables_query.cuda_tag(cuda)
    option, url, source = idx if idx else ("--index-url", f"https://download.pytorch.org/whl/{tag}", "")
    # no local tag where PyTorch's wheels have none: macOS, and the CPU builds for Linux aarch64 on the cpu index
    # (torch-2.1.1-cp310-cp310-manylinux_2_17_aarch64...whl: https://github.com/astral-sh/uv/issues/1497)
    arm_cpu = cuda is None and (report.host.arch or "").lower() in ("aarch64", "arm64")
    local = "" if os_ == "macos" or arm_cpu else f"+{tag}"
    pins = {"torch": f"{pub}{local}"}
    tv = tables_query.torchvision_for(tables, pub, cuda, python_minor(report)) if with_torchvision else None
    if tv is not None:
        pins["torchvision"] = f"{tables_query.public(tv.version)}{local}"
    installed = {n: p.version for n, p in report.packages.items()}
    # the same build again, or an untagged pin of the installed version (pip would answer "already satisfied")
    same = any(installed.get(n) == v or (not local and n in installed and tables_query.public(installed[n]) == v)
               for n, v in pins.items())
    return FixChoice(strategy="torch", component=component, python=python, os=os_,
                     installs=(PipInstall(tuple(f"{n}=={v}" for n, v in pins.items()), _torch_sources(option, url),
                                          replace=same and not dependencies),),
                     reason=reason, source=source)


def torch_fix(choice: FixChoice, description: str) -> Fix:
    return Fix(description=description, commands=choice.commands(), strategy="torch", choice=choice)


def alternative_fixes(report: Report, tables: Tables, mmcv_major: Optional[int] = None, limit: int = 2) -> list[Fix]:
    """Official wheel sets that do exist on this OS (a new environment with another torch/Python)."""
    gpu = report.gpu
    fixes = []
    combos = tables_query.mmcv_alternatives(tables, os_name(report), python_minor(report), mmcv_major=mmcv_major,
                                      consumers=consumers(report, tables), driver_cuda=gpu.cuda_driver_version,
                                      cuda_wanted=bool(torch_cuda(report) or gpu.devices), limit=limit)
    python, os_ = _target(report)
    for combo in combos:
        new_env = combo.python != python_minor(report)
        py_note = f" in a new Python {combo.python} environment" if new_env else ""
        option, url = combo.torch_index
        torch_pin = f"torch=={combo.torch}" + (f"+{tables_query.cuda_tag(combo.cuda)}" if option == "-f" else "")
        torch_reqs = (torch_pin,) + ((f"torchvision=={combo.torchvision.version}",) if combo.torchvision else ())
        choice = FixChoice(
            strategy="torch", component="mmcv", python="python" if new_env else python, os=os_,
            remove=() if new_env else tuple(mmcv_dists(report, tables)),
            installs=(PipInstall(torch_reqs, _torch_sources(option, url)),
                      PipInstall((f"{combo.mmcv.package}=={combo.mmcv.version}",), _sources(combo.mmcv))),
            reason=combo.mmcv.reason, source=combo.mmcv.source,
            satisfies=_ranges(report, tables, combo.mmcv.version), new_environment=new_env)
        fixes.append(Fix(
            description=f"or change torch{py_note}: torch {combo.torch} ({tables_query.cuda_tag(combo.cuda)}) + "
                        f"{combo.mmcv.package} {combo.mmcv.version} have official wheels for Python {combo.python} "
                        f"on {os_name(report)}",
            commands=choice.commands(), strategy="torch", choice=choice))
    return fixes


def mmcv_fix_blocked(report: Report) -> Optional[str]:
    """Why no mmcv fix (wheel or compat) can be judged now: torch or mmcv itself does not import (ED003/ED201)."""
    if torch_unusable(report):
        return ("repair torch first (its finding above says how): mmcv's ops and the compat layer both run on "
                "torch, so no mmcv fix can work or be chosen while `import torch` is broken")
    if damaged(report, "mmcv"):
        return "reinstall mmcv first (ED003): the compat layer replaces only mmcv._ext, not a damaged mmcv"
    return None


def mmcv_fixes(report: Report, tables: Tables, what: str, series: Optional[int] = None,
               with_alternatives: bool = False) -> tuple[list[Fix], Optional[FixChoice]]:
    """The wheel fix when an official wheel exists (and its choice), else the compat layer (+ alternatives)."""
    blocked = mmcv_fix_blocked(report)
    if blocked:
        return [Fix(description=blocked)], None
    if torch_version(report) is None:
        return [Fix(description="install torch first: mmcv's ops are built against a specific torch")], None
    choice = mmcv_wheel_choice(report, tables, series)
    if choice is not None:
        return [wheel_fix(report, choice, what)], choice
    fixes = [compat_fix(report)]
    if with_alternatives:
        fixes += alternative_fixes(report, tables, mmcv_major=series)
    return fixes, None


def reinstall_fix(report: Report, tables: Tables, dist: str) -> Fix:
    """`pip install --force-reinstall --no-deps DIST==VERSION` (+ PyTorch's index for its wheels): puts back
    exactly the installed release's files, changes no other distribution."""
    pkg = report.packages.get(norm(dist))
    version = pkg.version if pkg is not None and pkg.version else None
    name = pkg.name if pkg is not None else dist
    spec = f"{name}=={version}" if version else name
    index = ""
    if norm(name) in ("torch", "torchvision") and version:
        cuda = tables_query.local_cuda(version)
        if norm(name) == "torch":
            torch_ver = version
        else:
            torch_ver = torch_version(report) or ""
        row = tables_query.pytorch_index(tables, tables_query.public(torch_ver),
                                         cuda if "+" in version else torch_cuda(report))
        if row is not None:
            index = f" {row[0]} {row[1]}"
    # no strategy: `fix` would plan it as a plain `pip install NAME==VERSION`, which pip answers with
    # "already satisfied" (the dist-info is intact), so the printed command is the fix
    return Fix(description=f"reinstall {name} {version or ''} over itself (its files only, no dependencies)".replace(
        "  ", " "), commands=[f"{pip(report)} install --force-reinstall --no-deps {spec}{index}"])
