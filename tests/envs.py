"""Real Python environments for the tests, built once and cached.

Each named spec is a venv (Python 3.11, the version torch's wheels lie on disk for)
with real packages installed by real pip. Derived specs start from a copy of
their base so torch is unpacked once. Built under a file lock, marked ready only
when complete, cached in .cache/test-envs/ keyed by the spec's hash.

Building an env may use the package index (set-up, like `pip install` in the
README); the tests themselves never touch the network.

Tests that change an env must work on `clone_env(...)`, never on the cached one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ENVDOCTOR_TEST_ENVS", ROOT / ".cache" / "test-envs"))

# mmcv's setup.py needs pkg_resources (setuptools < 81); the file must repeat the
# machine's own caps because PIP_CONSTRAINT replaces the config-file constraint.
BUILD_CONSTRAINTS = "setuptools<81\ntorch<=2.14.1\ntorchvision<=0.29.1\n"


@dataclass(frozen=True)
class SourcePatch:
    """One visible edit of an installed file, applied after the installs (the way users work around a guard).

    `old` must occur exactly once in `path` (relative to site-packages), or the build fails: a
    patch that silently did not apply would test the unpatched package.
    """

    path: str
    old: str
    new: str
    why: str


@dataclass(frozen=True)
class EnvSpec:
    base: Optional[str] = None
    python: str = "3.11"
    # each entry is one `pip install` argument list, run in order
    installs: tuple[tuple[str, ...], ...] = ()
    build_constraints: bool = False
    # derive by hard-linking the base's files (saves GBs: torch, CUDA libs) instead of copying; only
    # for envs whose installs add packages (pip unlinks before it writes a file, so the base keeps its
    # own) and whose tests never modify an installed file in place
    # (not in repr: the cache key is the repr, and how a copy is made does not change the env)
    link_base: bool = field(default=False, repr=False)
    notes: str = ""
    # edits of installed files after the installs (not in repr: the cache key adds them only when
    # present, so the keys of the envs without patches stay as they were)
    patches: tuple[SourcePatch, ...] = field(default=(), repr=False)


SPECS: dict[str, EnvSpec] = {
    "bare": EnvSpec(notes="a venv with nothing but pip"),
    "torch213": EnvSpec(installs=(("torch==2.13.0",),), notes="torch 2.13.0+cpu alone"),
    "torch213-tv291": EnvSpec(
        base="torch213", installs=(("--no-deps", "torchvision==0.29.1"),),
        notes="torchvision built for torch 2.14 beside torch 2.13: 'operator torchvision::nms does not exist'",
    ),
    "mmcv-lite": EnvSpec(
        base="torch213", installs=(("mmcv-lite==2.2.0",),),
        notes="mmcv-lite 2.2.0: `import mmcv` works, no mmcv._ext",
    ),
    "mmcv172-pure": EnvSpec(
        base="torch213", installs=(("mmcv==1.7.2",),), build_constraints=True,
        notes="mmcv 1.7.2 built from the sdist without ops: no mmcv._ext",
    ),
    "mmcv172-tv291": EnvSpec(
        installs=(("torch==2.14.1", "torchvision==0.29.1", "mmcv==1.7.2"),), build_constraints=True,
        notes="mmcv 1.7.2 without ops beside a torch/torchvision pair whose ops load (mmcv 1.x's mmcv.ops "
        "imports torchvision): the compat layer's end-to-end env for mmcv 1.x",
    ),
    "mmdet33": EnvSpec(
        base="torch213", installs=(("mmcv-lite==2.1.0", "mmdet==3.3.0"),), link_base=True,
        notes="mmdet 3.3.0 on mmcv-lite 2.1.0 (mmdet 3.3.0 asserts mmcv < 2.2.0 at import, so not "
        "mmcv-lite 2.2.0), no mmcv._ext: real mmdet models on the compat layer",
    ),
    "mmdet33-mmcv22": EnvSpec(
        base="mmcv-lite", installs=(("mmdet==3.3.0",),), link_base=True,
        patches=(SourcePatch(
            "mmdet/__init__.py", "mmcv_maximum_version = '2.2.0'", "mmcv_maximum_version = '2.3.0'",
            why="mmdet 3.3.0 asserts mmcv < 2.2.0 at import; relaxing that bound is the common user-side "
            "workaround for running it on mmcv 2.2.0 (the last mmcv release)"),),
        notes="mmdet 3.3.0 on mmcv-lite 2.2.0 with mmdet's import-time mmcv cap raised to < 2.3.0 (patch "
        "below, asserted by the test), no mmcv._ext: the mmdet 3.3 models on the mmcv 2.2.0 line",
    ),
    "mmdet228": EnvSpec(
        base="mmcv172-tv291", installs=(("mmdet==2.28.2",),), link_base=True,
        notes="mmdet 2.28.2 on mmcv 1.7.2 without ops: real mmdet 2.x models on the compat layer",
    ),
    "mmrotate034": EnvSpec(
        base="mmdet228", installs=(("--no-deps", "mmrotate==0.3.4"), ("e2cnn",)), link_base=True,
        notes="mmrotate 0.3.4 on mmdet 2.28.2 + mmcv 1.7.2 without ops (--no-deps: its requirement "
        "`mmcv-full` would build mmcv with ops), no mmcv._ext: a real rotated detector on the compat layer. "
        "mmrotate 1.0.0rc1 cannot run on Python >= 3.10 (`from collections import Sequence`)",
    ),
    "mmcv-conflict": EnvSpec(
        base="mmcv172-pure", installs=(("mmcv-lite==2.2.0",),),
        notes="mmcv 1.7.2 and mmcv-lite 2.2.0 installed over each other (both own `mmcv/`)",
    ),
}


def _key(name: str) -> str:
    spec = SPECS[name]
    parts = [repr(spec)]
    if spec.patches:
        parts.append(repr(spec.patches))
    if spec.base:
        parts.append(_key(spec.base))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def env_dir(name: str) -> Path:
    return CACHE / f"{name}-{_key(name)}"


def python_in(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def _base_python(minor: str) -> str:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        for d in sorted(pyenv.iterdir(), reverse=True):
            if d.name.startswith(minor + ".") and (d / "bin" / "python").exists():
                return str(d / "bin" / "python")
    found = shutil.which(f"python{minor}")
    if found:
        return found
    if "%d.%d" % sys.version_info[:2] == minor:
        return sys.executable
    raise RuntimeError(f"no Python {minor} on this machine for the test environments")


class EnvBuildError(RuntimeError):
    pass


def _pip(prefix: Path, args: tuple[str, ...], constraints: Optional[Path]) -> None:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if constraints is not None:
        env["PIP_CONSTRAINT"] = str(constraints)
    proc = subprocess.run([str(python_in(prefix)), "-m", "pip", "install", "-q", *args],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise EnvBuildError(f"pip install {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def apply_patch(prefix: Path, patch: SourcePatch) -> None:
    """Apply one SourcePatch; a new file replaces the old (a hard-linked base keeps its own copy)."""
    target = site_packages(prefix) / patch.path
    text = target.read_text()
    if text.count(patch.old) != 1:
        raise EnvBuildError(f"patch of {patch.path}: {patch.old!r} occurs {text.count(patch.old)} times, not once")
    tmp = target.with_name(target.name + ".envpatch")
    tmp.write_text(text.replace(patch.old, patch.new))
    os.replace(tmp, target)
    for stale in (target.parent / "__pycache__").glob(target.stem + ".*.pyc"):
        stale.unlink()


def copy_venv(src: Path, dest: Path, link: bool = False) -> None:
    """A working copy of a venv: files copied (or hard-linked), scripts' shebangs are not used (we call python -m)."""
    shutil.copytree(src, dest, symlinks=True, copy_function=os.link if link else shutil.copy2)
    (dest / ".ready").unlink(missing_ok=True)


def get_env(name: str) -> Path:
    """The prefix of the named env, building it (and its base) if needed."""
    spec = SPECS[name]
    target = env_dir(name)
    if (target / ".ready").exists():
        _used(target)
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    base_dir = get_env(spec.base) if spec.base else None
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".ready").exists():
            return target
        if target.exists():
            shutil.rmtree(target)
        if base_dir is not None:
            copy_venv(base_dir, target, link=spec.link_base)
        else:
            subprocess.run([_base_python(spec.python), "-m", "venv", str(target)], check=True)
        constraints = None
        if spec.build_constraints:
            constraints = target / "build-constraints.txt"
            constraints.write_text(BUILD_CONSTRAINTS)
        try:
            for args in spec.installs:
                _pip(target, args, constraints)
            for patch in spec.patches:
                apply_patch(target, patch)
        except EnvBuildError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / ".ready").write_text(json.dumps({"name": name, "spec": repr(spec)}))
    return target


def _used(prefix: Path) -> None:
    # the ready mark's time is the env's last use: prune() keeps what another checkout sharing the cache
    # (ENVDOCTOR_TEST_ENVS) still uses
    try:
        os.utime(prefix / ".ready")
    except OSError:
        pass


# a cache shared through ENVDOCTOR_TEST_ENVS may serve checkouts of other commits: their envs stay this long
SHARED_KEEP_SECONDS = 2 * 24 * 3600


def prune(keep_seconds: Optional[float] = None) -> list[Path]:
    """Remove cached envs of specs that are no longer current (built by an older commit: another hash).

    Each spec change leaves its old env behind (the mmcv172-tv291 env alone is ~6 GB), and a machine that
    keeps the cache between CI runs fills its disk. In the checkout's own cache (the default) an older
    spec's env is never used again; in a shared one it is kept until unused for SHARED_KEEP_SECONDS."""
    if keep_seconds is None:
        keep_seconds = SHARED_KEEP_SECONDS if "ENVDOCTOR_TEST_ENVS" in os.environ else 0.0
    current = {env_dir(n).name for n in SPECS}
    removed: list[Path] = []
    now = time.time()
    for d in sorted(CACHE.iterdir()) if CACHE.is_dir() else []:
        name, _, digest = d.name.rpartition("-")
        if not d.is_dir() or d.name in current or len(digest) != 12 or not all(
                c in "0123456789abcdef" for c in digest):
            continue
        mark = d / ".ready"
        try:
            used = (mark if mark.exists() else d).stat().st_mtime
        except OSError:
            continue
        if now - used < keep_seconds:
            continue
        with open(CACHE / f"{name}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not while that name is being built
            except OSError:
                continue
            shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def clone_env(name: str, dest: Path) -> Path:
    """A private, mutable copy of a cached env (for fix/undo tests)."""
    copy_venv(get_env(name), dest)
    return dest


def site_packages(prefix: Path) -> Path:
    found = sorted(prefix.glob("lib/python3*/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages under {prefix}")
    return found[0]


if __name__ == "__main__":
    # `python -m tests.envs NAME...` builds envs ahead of a test run; `--prune` removes outdated ones
    if sys.argv[1:] == ["--prune"]:
        for gone in prune():
            print(f"tests/envs.py: removed the outdated test environment {gone.name}")
        raise SystemExit(0)
    for n in sys.argv[1:] or list(SPECS):
        print(n, get_env(n))
