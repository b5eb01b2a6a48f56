"""Build-time requirements in a private directory, never in the target environment.

mmcv's setup.py needs pkg_resources (setuptools < 81 here), `wheel`, and ninja for parallel
compiles. They are installed with the target's own pip into `<dir>` (`pip install --target`)
and reach the build through PYTHONPATH and PATH only, so the target's setuptools stays what it
was. The build runs without isolation, so it sees the target's torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from envdoctor.probe import launch

PIP_TIMEOUT = 600.0


class OverlayError(RuntimeError):
    pass


@dataclass
class Overlay:
    path: Path
    requirements: tuple[str, ...]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """base + the overlay first on PYTHONPATH and ninja's binary first on PATH."""
        env = dict(base)
        # the target's own PYTHONPATH would let another torch or setuptools into the build
        env["PYTHONPATH"] = str(self.path)
        bins = [str(p) for p in (self.path / "ninja" / "data" / "bin", self.path / "bin") if p.is_dir()]
        env["PATH"] = os.pathsep.join(bins + [base.get("PATH", os.defpath)])
        return env


def pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def make_overlay(python: str, directory: Path, requirements: Iterable[str],
                 pip_sources: Iterable[str] = ()) -> Overlay:
    """Install the build requirements into `directory` with the target's pip (binary wheels only)."""
    reqs = tuple(requirements)
    directory.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--only-binary=:all:",
            "--target", str(directory), *pip_sources, *reqs]
    rc, out = launch.run(argv, pip_env(), PIP_TIMEOUT)
    if rc != 0:
        tail = "\n".join(line for line in out.strip().splitlines()[-6:])
        raise OverlayError(f"installing the build requirements ({', '.join(reqs)}) into {directory} failed "
                           f"(exit {rc}):\n{tail}")
    return Overlay(directory, reqs)
