"""Run one source build with the target's interpreter: `pip wheel` without isolation, into a private
directory, with a live `[n/N]` progress line parsed from ninja, a full log file, and Ctrl-C that
stops every compiler job and leaves the target untouched (the build never writes to it: its
output is a wheel in our own directory).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from envdoctor.build.overlay import Overlay, pip_env
from envdoctor.probe import launch

# ninja's status prefix, "[12/77] c++ -MMD ..." (pip -v indents the build's output)
NINJA_STATUS = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")
COMPILED = (".so", ".pyd", ".dylib", ".dll")
TAIL_LINES = 30
# a compiler's or linker's own error line: the cause, which pip's traceback at the end of the log buries
COMPILER_ERROR = re.compile(r"\S+:\d+:(?:\d+:)? (?:fatal )?error[: ]|^\s*FAILED:|collect2: error|/ld(?:\.\w+)?: |"
                            r"(?:c\+\+|g\+\+|gcc|nvcc|cl)(?:\.exe)?: (?:fatal )?error|\berror C\d{4}\b|Killed signal")
MAX_ERRORS = 12


def first_errors(lines: Iterable[str], limit: int = MAX_ERRORS) -> list[str]:
    out = []
    for line in lines:
        if COMPILER_ERROR.search(line):
            out.append(line.strip()[:400])
            if len(out) >= limit:
                break
    return out


@dataclass
class BuildProgress:
    done: int
    total: int
    elapsed: float
    line: str


@dataclass
class BuildOutcome:
    status: str  # built | failed | interrupted | no-ops (built, but the wheel has no compiled extension)
    log: Path
    seconds: float
    returncode: Optional[int] = None
    wheel: Optional[Path] = None
    units_done: int = 0
    units_total: int = 0
    tail: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first compiler/linker error lines
    peak_job_rss_mib: Optional[int] = None  # largest resident size of one finished child (a compiler job)

    @property
    def ok(self) -> bool:
        return self.status == "built"


Progress = Callable[[BuildProgress], None]


def _child_peak_mib() -> Optional[int]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) // 1024  # KiB on Linux


def compiled_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return [n for n in z.namelist() if n.endswith(COMPILED) or ".so." in n]


# what mmcv's setup.py compiles (mmcv 2.2.0: 57 + 20 for CPU ops, + 59 CUDA units)
_UNIT_DIRS = {"cpu": ("ops/csrc/pytorch/", "ops/csrc/pytorch/cpu/"),
              "cuda": ("ops/csrc/pytorch/", "ops/csrc/pytorch/cpu/", "ops/csrc/pytorch/cuda/")}


def count_units(source: Path, device: str) -> Optional[int]:
    """Compile units of an mmcv source (an sdist or a checkout): the plan's time estimate."""
    if source.is_dir():
        names = [str(p.relative_to(source)).replace(os.sep, "/") for p in source.rglob("*") if p.is_file()]
    else:
        try:
            import tarfile

            with tarfile.open(source) as t:
                names = t.getnames()
        except (OSError, tarfile.TarError):
            return None
    count = 0
    for name in names:
        folder, _, base = name.rpartition("/")
        if base.endswith((".cpp", ".cu")) and any(folder.endswith(d.rstrip("/")) for d in _UNIT_DIRS[device]):
            count += 1
    return count or None


def count_sources(source: Path) -> Optional[int]:
    """C++/CUDA files of any source directory or sdist: the unit count of a package that is not laid out like
    mmcv (a fork, or the tests' generated package)."""
    try:
        if source.is_dir():
            names = [p.name for p in source.rglob("*") if p.is_file()]
        else:
            with tarfile.open(source) as t:
                names = t.getnames()
    except (OSError, tarfile.TarError):
        return None
    return sum(1 for n in names if n.endswith((".cpp", ".cu", ".cc"))) or None


def _stage_source(source: Path, work: Path) -> Path:
    """A source directory is copied first: the build writes build/ and *.egg-info next to setup.py,
    and a user's checkout is theirs. An sdist file is unpacked by pip into its own temp directory."""
    if source.is_dir():
        dest = work / "src"
        shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns("build", "*.egg-info", ".git"))
        return dest
    return source


def fetch_sdist(python: str, requirement: str, overlay: Overlay, dest: Path, pip_sources: list[str],
                log: Path, timeout: float = 900.0) -> Path:
    """`pip download` the sdist (its metadata runs setup.py: the overlay's setuptools and the target's
    torch must be visible, hence no isolation here either)."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--no-build-isolation",
            "--no-cache-dir", "-d", str(dest), *pip_sources, requirement]
    rc, out = launch.run(argv, overlay.env(pip_env()), timeout)
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(argv) + "\n" + out + f"\n[exit {rc}]\n")
    found = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    if rc != 0 or not found:
        raise RuntimeError(f"downloading the source of {requirement} failed (exit {rc}); see {log}")
    return found[0]


def run_build(python: str, source: Path, overlay: Overlay, build_env: dict[str, str], work: Path, log: Path,
              progress: Optional[Progress] = None) -> BuildOutcome:
    """Build a wheel of `source` (a directory or an sdist) into `work`/wheel with `python`'s pip."""
    work.mkdir(parents=True, exist_ok=True)
    out_dir = work / "wheel"
    out_dir.mkdir(exist_ok=True)
    src = _stage_source(source, work)
    env = overlay.env(pip_env())
    env.update(build_env)
    # --no-index: everything the build needs is the target's own packages plus the overlay
    argv = [python, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-cache-dir",
            "--no-index", "-w", str(out_dir), str(src)]
    start = time.monotonic()
    done = total = 0
    tail: list[str] = []
    errors: list[str] = []
    status = "failed"
    rc: Optional[int] = None
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(argv) + "\n")
        f.write("".join(f"# {k}={v}\n" for k, v in sorted(build_env.items())))
        f.write(f"# PYTHONPATH={env['PYTHONPATH']}\n")
        f.flush()
        proc = launch.start(argv, env, cwd=str(work))
        assert proc.stdout is not None
        try:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                f.write(line + "\n")
                tail = (tail + [line])[-TAIL_LINES:]
                if len(errors) < MAX_ERRORS:
                    errors += first_errors([line])
                m = NINJA_STATUS.match(line)
                if m:
                    done, total = int(m.group(1)), int(m.group(2))
                    if progress is not None:
                        progress(BuildProgress(done, total, time.monotonic() - start, line.strip()))
            rc = proc.wait()
            status = "built" if rc == 0 else "failed"
        except KeyboardInterrupt:
            launch.stop(proc)
            rc = proc.returncode
            status = "interrupted"
            f.write("[interrupted: the build was stopped; nothing was installed]\n")
        f.write(f"[exit {rc}]\n")
    wheels = sorted(out_dir.glob("*.whl"))
    wheel = wheels[0] if wheels and status == "built" else None
    if status == "built" and (wheel is None or not compiled_members(wheel)):
        # the silent failure users know: setup.py skipped the ops and produced a pure-Python wheel
        status = "no-ops"
    if status != "built":
        shutil.rmtree(out_dir, ignore_errors=True)
        wheel = None
    if src != source:
        shutil.rmtree(src, ignore_errors=True)
    return BuildOutcome(status=status, log=log, seconds=round(time.monotonic() - start, 1), returncode=rc,
                        wheel=wheel, units_done=done, units_total=total, tail=tail, errors=errors,
                        peak_job_rss_mib=_child_peak_mib())


def default_log(work: Path) -> Path:
    os.makedirs(work, exist_ok=True)
    return work / "build.log"
