"""envdoctor fleet run through real launchers: a real one-node Slurm (munged, slurmctld, slurmd started by the
fixture; several tasks, each probing a different real test environment) and real pdsh with its exec module.

Skipped, with the reason, only where the daemons are not installed; never in CI (tests/run.sh installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT, real_env, run_cli
from tests.test_fleet import validate_summary
from tests.test_probe_target import make_venv, site_packages

MEMBER = f"{sys.executable} -m envdoctor"


def _need(binaries: list[str], what: str) -> None:
    if binaries:
        msg = f"{what} not installed ({', '.join(binaries)}); tests/run.sh installs it when run as root"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def slurm():
    from tests.slurm_cluster import SlurmCluster, missing_binaries

    _need(missing_binaries(), "Slurm/munge")
    root = Path(tempfile.mkdtemp(prefix="edslurm-"))  # short: munge's socket path must fit sun_path
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


def _env(cluster, pythons: list[str]) -> dict[str, str]:
    return {"SLURM_CONF": str(cluster.conf), "ENVDOCTOR_FLEET_PYTHONS": os.pathsep.join(pythons),
            "PYTHONPATH": str(ROOT)}


def test_srun_heterogeneous_tasks_full_check(slurm):
    envs = [real_env("torch213"), real_env("torch213"), real_env("torch213-tv291"), real_env("bare")]
    res = run_cli("fleet", "run", "--format", "json", "--member-command", MEMBER, "--",
                  "srun", "-n", "4", "--label", env=_env(slurm, [str(e) for e in envs]), timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    d = json.loads(res.stdout)
    validate_summary(d)
    assert (d["reported"], d["expected"], d["missing"]) == (4, 4, []), d["missing"]
    # redacted: the Slurm node is node-01 (the mapping only on stderr), its tasks node-01#N
    assert "fleetnode" not in res.stdout and "node name node-01 = fleetnode" in res.stderr
    maj = d["groups"][0]
    assert maj["majority"] and maj["nodes"] == ["node-01#0", "node-01#1"] and maj["errors"] == 0
    by_node = {g["nodes"][0]: g for g in d["groups"][1:]}
    tv = by_node["node-01#2"]
    assert tv["worse"]
    load = {c["key"]: c for c in tv["differences"] if c["section"] == "load"}
    assert load["torchvision"]["b"] == "import_error" and "torchvision::nms" in load["torchvision"]["note"]
    assert any(c["section"] == "findings" and c["key"] == "ED301" for c in tv["differences"])
    bare = by_node["node-01#3"]
    assert bare["facts"]["fields"]["torch"] == "not installed"
    assert {f["id"]: f["nodes"] for f in d["findings"]}["ED301"] == ["node-01#2"]
    assert d["launcher"]["exit_code"] == 1 and not d["launcher"]["timed_out"]


def test_srun_killed_overrunning_and_unstarted_tasks_are_reported_with_why(slurm, tmp_path):
    # a real interpreter that never answers (its sitecustomize sleeps): the member is busy probing.
    # (A shell script would not do: envdoctor refuses a --python that is not Python before running it.)
    hang = make_venv("3.12", tmp_path / "hang") / "bin" / "python"
    (site_packages(hang.parent.parent) / "sitecustomize.py").write_text("import time\ntime.sleep(300)\n")
    wrapper = tmp_path / "member.sh"
    out2 = tmp_path / "task2.out"
    # task 2 is killed (SIGKILL) once it has said hello: a node dying in the middle of its check
    wrapper.write_text('#!/bin/sh\ncase "$SLURM_PROCID" in\n'
                       f'  2) "$@" > {out2} & pid=$!\n'
                       f'     until grep -q hello {out2}; do sleep 0.1; done; kill -9 $pid; cat {out2}; exit 137;;\n'
                       '  3) exec sleep 300;;\nesac\nexec "$@"\n')
    wrapper.chmod(0o755)
    pythons = [str(real_env("torch213")), str(hang), str(hang), str(real_env("torch213"))]
    res = run_cli("fleet", "run", "--quick", "--no-redact", "--format", "json", "--fleet-timeout", "20",
                  "--member-command", f"{wrapper} {MEMBER}", "--", "srun", "-n", "4",
                  env=_env(slurm, pythons), timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    d = json.loads(res.stdout)
    validate_summary(d)
    assert d["reported"] == 1 and d["groups"][0]["nodes"] == ["fleetnode#0"]
    why = {(m["node"], m["task"]): m for m in d["missing"]}
    assert set(why) == {("fleetnode#1", "1"), ("fleetnode#2", "2"), ("?", "3")}, why
    # srun ends the overrunning step with SIGKILL ("tasks 1,3: Killed" after "forcing job termination"):
    # that is the timeout, not a crash
    overran = why[("fleetnode#1", "1")]
    assert overran["reason"] == "timeout" and "still running" in overran["detail"], d["missing"]
    killed = why[("fleetnode#2", "2")]
    assert killed["reason"] == "crash" and "output ended" in killed["detail"] and "task 2" in killed["detail"]
    assert why[("?", "3")]["reason"] == "timeout" and "task 3 of 4 never started" in why[("?", "3")]["detail"]
    assert d["launcher"]["timed_out"]


def test_pdsh_exec_eight_nodes(tmp_path):
    _need([b for b in ("pdsh",) if shutil.which(b) is None], "pdsh")
    envs = tmp_path / "envs"
    envs.mkdir()
    layout = {**{f"node0{i}": "torch213" for i in range(1, 6)}, "node06": "torch213-tv291", "node07": "bare"}
    for node, name in layout.items():
        (envs / node).symlink_to(real_env(name))  # node08 has none: its check fails, and says why
    res = run_cli("fleet", "run", "--quick", "--no-redact", "--format", "json", "--python", f"{envs}/%h",
                  "--member-command", MEMBER, "--",
                  "pdsh", "-R", "exec", "-w", "node[01-08]", "env", "ENVDOCTOR_FLEET_NODE=%h", timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    d = json.loads(res.stdout)
    validate_summary(d)
    assert (d["reported"], d["expected"]) == (7, 8)
    maj = d["groups"][0]
    assert maj["nodes"] == [f"node0{i}" for i in range(1, 6)]
    rest = {g["nodes"][0]: g for g in d["groups"][1:]}
    assert set(rest) == {"node06", "node07"}
    tvdiff = {c["key"]: c for c in rest["node06"]["differences"]}
    assert tvdiff["torchvision"]["b"] == "0.29.1+cu130"
    assert rest["node07"]["facts"]["fields"]["torch"] == "not installed"
    (m,) = d["missing"]
    assert (m["node"], m["reason"]) == ("node08", "error") and "--python" in m["detail"]
    # the same run as text: the outliers and the missing node in words
    text = run_cli("fleet", "run", "--quick", "--python", f"{envs}/%h", "--member-command", MEMBER, "--",
                   "pdsh", "-R", "exec", "-w", "node[01-08]", "env", "ENVDOCTOR_FLEET_NODE=%h", timeout=300)
    assert "majority 5 node(s)" in text.stdout and "no report from" in text.stdout
    assert "node08" not in text.stdout and "node-08: error:" in text.stdout


def test_pdsh_nodes_where_envdoctor_is_not_installed_are_named_with_pdsh_s_words():
    _need([b for b in ("pdsh",) if shutil.which(b) is None], "pdsh")
    res = run_cli("fleet", "run", "--format", "json", "--member-command", "/nonexistent/envdoctor", "--",
                  "pdsh", "-R", "exec", "-w", "gpu[1-3]", "env", timeout=120)
    assert res.returncode == 1, res.stderr
    d = json.loads(res.stdout)
    validate_summary(d)
    assert (d["reported"], d["expected"]) == (0, 3)
    assert [(m["node"], m["reason"]) for m in d["missing"]] == [(f"node-0{i}", "launcher_error") for i in (1, 2, 3)]
    assert all("never started" in m["detail"] and "exit code 127" in m["detail"] for m in d["missing"]), d["missing"]
    assert "gpu1" not in res.stdout and "<hostlist>" in " ".join(d["launcher"]["command"])
