"""Fixtures for the compat tests: cached test virtualenvs with real mmcv Python code.

``build_env(name, packages, constraints)`` creates ``<repo>/.cache/test-envs/<name>``
from a Python 3.11 interpreter, keyed by the spec (a JSON marker file inside the
venv), under a file lock, idempotently.  A failed build fails the test with pip's
output when ``CI=true`` and skips it otherwise.
"""

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / ".cache" / "test-envs"

# mmcv 1.x sdists import pkg_resources in setup.py (gone in setuptools >= 81); the torch caps
# repeat this machine's global pip constraints because PIP_CONSTRAINT replaces them.
MMCV1_CONSTRAINTS = ["setuptools<81", "torch<=2.14.1", "torchvision<=0.29.1"]

ENV_SPECS = {
    "mmcv-lite-2.2.0": {"packages": ["torch==2.13.0", "mmcv-lite==2.2.0", "mmengine"],
                        "constraints": []},
    # mmcv 1.7.2's mmcv.ops imports mmcv.cnn -> mmcv.runner -> torchvision, so this env needs a
    # torchvision whose compiled ops load: the torch 2.14.1 / torchvision 0.29.1 pair
    # (torchvision 0.28 from PyPI is a CUDA build that fails on torch 2.13.0+cpu).
    "mmcv-1.7.2": {"packages": ["torch==2.14.1", "torchvision==0.29.1", "mmcv==1.7.2"],
                   "constraints": MMCV1_CONSTRAINTS},
}


def _python311():
    if sys.version_info[:2] == (3, 11):
        base = getattr(sys, "_base_executable", None) or sys.executable
        if base and os.path.exists(base):
            return base
    for cand in [shutil.which("python3.11")] + sorted(
            glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11"))):
        if cand and os.path.exists(cand):
            return cand
    return None


class EnvBuildError(RuntimeError):
    pass


def build_env(name, packages, constraints=()):
    """Return the path of a venv with ``packages``; build it if its spec changed."""
    py = _python311()
    if py is None:
        raise EnvBuildError("no Python 3.11 interpreter found")
    spec = {"python": "3.11", "packages": list(packages), "constraints": list(constraints)}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    ENVS.mkdir(parents=True, exist_ok=True)
    venv = ENVS / name
    marker = venv / ".envdoctor-test-env.json"
    with open(str(ENVS / (name + ".lock")), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists() and json.loads(marker.read_text()).get("key") == key:
                return venv
            if venv.exists():
                shutil.rmtree(str(venv))
            log = []

            def run(cmd, env=None):
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   universal_newlines=True, env=env)
                log.append("$ " + " ".join(cmd) + "\n" + p.stdout)
                if p.returncode != 0:
                    raise EnvBuildError("building test env %s failed:\n%s" % (name, "\n".join(log)))

            run([py, "-m", "venv", str(venv)])
            env = dict(os.environ)
            env.pop("PIP_CONSTRAINT", None)
            if constraints:
                cfile = venv / "constraints.txt"
                cfile.write_text("\n".join(constraints) + "\n")
                env["PIP_CONSTRAINT"] = str(cfile)
            run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check"] + list(packages), env=env)
            marker.write_text(json.dumps({"key": key, "spec": spec}))
            return venv
        except EnvBuildError:
            if venv.exists():
                shutil.rmtree(str(venv), ignore_errors=True)
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _env_fixture(name):
    spec = ENV_SPECS[name]
    try:
        return build_env(name, spec["packages"], spec["constraints"])
    except EnvBuildError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip("test env %s could not be built (set CI=true to fail instead): %s"
                    % (name, str(exc)[-2000:]))


def site_packages(venv):
    out = subprocess.check_output(
        [str(Path(venv) / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        universal_newlines=True)
    return Path(out.strip())


@pytest.fixture(scope="session")
def mmcv2_env():
    return _env_fixture("mmcv-lite-2.2.0")


@pytest.fixture(scope="session")
def mmcv1_env():
    return _env_fixture("mmcv-1.7.2")


if __name__ == "__main__":  # pre-build: python tests/compat/conftest.py [name...]
    for n in sys.argv[1:] or list(ENV_SPECS):
        print(n, build_env(n, ENV_SPECS[n]["packages"], ENV_SPECS[n]["constraints"]))
