#!/usr/bin/env bash
# The whole test suite from a fresh clone (README "Run the tests"; .ci/run calls exactly this).
# Makes .venv with envdoctor (editable) + test dependencies + torch/torchvision for the compat
# layer's numerics, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${ENVDOCTOR_TEST_PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
# The PE tests (tests/test_binary_pe.py) cross-compile Windows DLLs with MinGW-w64.
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq gcc-mingw-w64-x86-64 >/dev/null
fi
# The fleet tests (tests/test_fleet_launchers.py) start a real one-node Slurm and run pdsh's exec module.
if { ! command -v pdsh >/dev/null 2>&1 || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] \
      || [ ! -x /usr/sbin/munged ] || ! command -v srun >/dev/null 2>&1; } \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd munge slurm-client pdsh >/dev/null
fi
# The PE-at-scale tests (tests/test_binary_pe_torch.py) read a real Windows torch wheel's DLLs; fetched once.
WHEELS="${ENVDOCTOR_TEST_WHEELS:-$HOME/.cache/envdoctor-test-wheels}"
if [ ! -f "$WHEELS/torch-2.5.1-cp312-cp312-win_amd64.whl" ]; then
  mkdir -p "$WHEELS"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: --platform win_amd64 \
    --python-version 3.12 -d "$WHEELS" 'torch==2.5.1' || echo "tests/run.sh: could not download the Windows torch wheel"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# torch is never a dependency of envdoctor itself; the tests need a real one.
.venv/bin/python -m pip install -q --disable-pip-version-check 'torch==2.14.1' 'torchvision==0.29.1'
# tests/test_build_e2e.py installs a real mmcv build from envdoctor's build cache. When that cache is cold
# (a fresh CI machine) the build itself takes ~16 min on 2 idle cores: start it now, nice'd, so that it overlaps
# the rest of the suite; the e2e test runs last and waits for it (tests/mmcv_build.py; a warm cache: seconds).
# Only for whole-suite runs (no test paths given); ENVDOCTOR_PREBUILD=0 turns it off.
# A machine that keeps .cache between runs keeps the envs of older specs too (GBs each): remove them first.
.venv/bin/python -m tests.envs --prune
# The suite needs ~20 GB of disk on a cold cache; a full disk fails many tests at once, so say what is free.
df -h . "${TMPDIR:-/tmp}" 2>/dev/null | sed 's/^/tests\/run.sh: disk: /' >&2 || true
only_options=1
for a in "$@"; do case "$a" in -*) ;; *) only_options=0 ;; esac; done
if [ "$only_options" = 1 ] && [ "${ENVDOCTOR_PREBUILD:-1}" != 0 ]; then
  mkdir -p .cache
  nice -n 10 .venv/bin/python -m tests.mmcv_build > .cache/mmcv-prebuild.log 2>&1 &
fi
exec .venv/bin/python -m pytest "$@"
