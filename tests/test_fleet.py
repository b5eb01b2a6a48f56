"""envdoctor fleet without a launcher: the record format, assembling torn and interleaved output, the
summary (groups, majority, outliers, counts, missing nodes), redaction, JSON schema, Markdown, fleet diff.

Reports are the recorded real ones (tests/data/reports) and recorded GPU fact sets (tests/data/facts) run
through the real checks; dying members are real processes killed by real signals.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from envdoctor.facts import Report
from envdoctor.fleet import record
from envdoctor.fleet.collect import Assembler, Collected, Hints, Missing, expected_missing, member
from envdoctor.fleet.fingerprint import node_facts
from envdoctor.fleet.hostlist import expand, from_launcher
from envdoctor.fleet.names import Pseudonyms
from envdoctor.fleet.summary import build
from envdoctor.rules import load_tables
from tests.conftest import ROOT, run_cli
from tests.diagnosed import diagnosed

DATA = Path(__file__).resolve().parent / "data"
REPORTS = DATA / "reports"
FLEET_SCHEMA = json.loads((ROOT / "docs" / "fleet.schema.json").read_text())


def report(name: str) -> dict:
    return json.loads((REPORTS / name).read_text(encoding="utf-8"))


def big_report(name: str = "torch213.json", seed: int = 0) -> dict:
    """A recorded report with incompressible padding, so that it travels in several parts."""
    rep = report(name)
    rng = random.Random(seed)
    rep["extra"]["padding"] = "".join(rng.choice("0123456789abcdef") for _ in range(20_000))
    return rep


def validate_summary(data: dict) -> None:
    import jsonschema

    jsonschema.validate(data, FLEET_SCHEMA)


def gpu_report(driver: str) -> dict:
    """The recorded driver-470 / torch 2.1.2+cu121 machine, with the driver set to `driver`, through the real checks."""
    r = Report.from_dict(json.loads((DATA / "facts" / "linux_driver470_torch212_cu121.json").read_text()))
    r.gpu.driver_version = driver
    r.gpu.cuda_driver_version = None  # derived from the driver branch by the checks, as on a real probe
    return diagnosed(r, load_tables()).to_dict()


def lines_of(members: list[tuple[str, str | None, dict]], run: str = "r1") -> list[list[str]]:
    out = []
    for node, task, rep in members:
        ls = [record.hello_line(run, node, task, len(members), "0")]
        ls += record.report_lines(run, node, task, rep)
        ls.append(record.bye_line(run, node, task, 0))
        out.append(ls)
    return out


# --- the wire format -------------------------------------------------------------------------------------

def test_every_line_fits_in_one_atomic_pipe_write_and_in_one_srun_io_buffer():
    rep = report("mmcv-conflict.json")
    rng = random.Random(1)
    rep["extra"]["noise"] = "".join(rng.choice("abcdefghij") for _ in range(200_000))
    ls = record.report_lines("run", "n" * 500, "12", rep)
    assert len(ls) > 10
    assert max(len(x.encode()) for x in ls) < record.MAX_LINE  # srun cuts lines at 1024 bytes


def test_interleaved_prefixed_output_of_several_members_is_reassembled_exactly():
    reps = [big_report("torch213.json"), big_report("torch213-tv291.json"), big_report("mmcv-lite.json")]
    streams = lines_of([("node01", "0", reps[0]), ("node02", "1", reps[1]), ("node03", "2", reps[2])])
    rng = random.Random(7)
    merged: list[str] = []
    while any(streams):
        s = rng.choice([s for s in streams if s])
        line = s.pop(0)
        # pdsh and srun --label prefix lines; other programs write between the records
        merged.append(rng.choice(["", "node0x: ", "12: "]) + line)
        if rng.random() < 0.3:
            merged.append("some unrelated output from the job\n")
    asm = Assembler("r1")
    for ln in merged:
        asm.feed(ln)
    got = asm.finish()
    assert not got.missing
    assert {(m.node, m.task): m.facts for m in got.members} == {
        ("node01", "0"): node_facts(reps[0]), ("node02", "1"): node_facts(reps[1]),
        ("node03", "2"): node_facts(reps[2])}
    assert len({m.facts.fingerprint for m in got.members if m.facts}) == 3


def test_a_report_travels_exactly():
    rep = big_report("mmcv-conflict.json")
    parts = {}
    for ln in record.report_lines("r", "n", None, rep):
        rec = record.parse_line(ln)
        assert rec is not None
        parts[rec.info["i"]] = rec.info["d"]
        sha = rec.info["sha"]
    assert record.unpack(parts, sha) == rep


def test_partial_torn_and_foreign_output_is_reported_never_taken_for_a_report():
    reps = [big_report()] * 3
    a, b, c = lines_of([("node01", None, reps[0]), ("node02", None, reps[1]), ("node03", None, reps[2])])
    asm = Assembler("r1")
    for ln in a:
        asm.feed(ln)
    for ln in b[:2]:  # hello and the first part, then the node died
        asm.feed(ln)
    for ln in c:  # one part torn in the middle by another writer
        asm.feed(ln[:len(ln) // 2] + "XXXX\n" if '"i":1,' in ln else ln)
    for ln in lines_of([("node04", None, reps[0])], run="another-run")[0]:
        asm.feed(ln)  # a stale log of an earlier run
    got = asm.finish()
    assert [m.node for m in got.members] == ["node01"]
    why = {m.node: m for m in got.missing}
    assert set(why) == {"node02", "node03"}
    assert why["node02"].reason == "crash" and "1 of " in why["node02"].detail
    assert why["node03"].reason in ("crash", "garbled") and "torn" in why["node03"].detail
    assert got.stray_records == len(lines_of([("node04", None, reps[0])])[0])


def test_a_part_whose_data_was_mixed_with_another_report_fails_the_digest():
    x = lines_of([("node01", None, big_report(seed=1))])[0]
    y = lines_of([("node01", None, big_report(seed=2))])[0]
    assert min(len(x), len(y)) > 4
    # the third part's data from the other report, under this report's digest: a splice that still parses
    body_x = json.loads(x[3][len(record.MARK):])
    body_x["d"] = json.loads(y[3][len(record.MARK):])["d"]
    x[3] = record.MARK + json.dumps(body_x, separators=(",", ":")) + "\n"
    asm = Assembler("r1")
    for ln in x:
        asm.feed(ln)
    got = asm.finish()
    assert not got.members
    assert got.missing[0].reason == "garbled" and "do not add up" in got.missing[0].detail


def test_a_member_that_reported_twice_counts_once_with_its_last_report():
    first, second = big_report("torch213.json"), big_report("mmcv-lite.json")
    asm = Assembler("r1")
    for ln in lines_of([("node01", "0", first)])[0] + lines_of([("node01", "0", second)])[0]:
        asm.feed(ln)
    got = asm.finish()
    assert [m.facts for m in got.members] == [node_facts(second)] and not got.missing


def _member(env: dict, python: str, run: str = "rr") -> subprocess.Popen:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "envdoctor", "check", "--fleet-member", run, "--python", python],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd=ROOT)


def _wait_for_hello(p: subprocess.Popen) -> str:
    assert p.stdout is not None
    first = p.stdout.readline().decode()
    assert record.MARK in first and '"k":"hello"' in first, first
    return first


@pytest.mark.parametrize("sig, reason", [(signal.SIGKILL, "crash"), (signal.SIGTERM, "error")])
def test_a_member_killed_while_probing_is_no_report_with_the_reason(sig, reason):
    p = _member({"ENVDOCTOR_FLEET_NODE": "node09", "ENVDOCTOR_FLEET_TASK": "3"}, sys.executable)
    first = _wait_for_hello(p)
    p.send_signal(sig)
    rest, _ = p.communicate(timeout=60)
    asm = Assembler("rr")
    for ln in [first, *rest.decode().splitlines()]:
        asm.feed(ln)
    said = "Killed" if sig == signal.SIGKILL else "Terminated"
    got = asm.finish(hints=Hints([f"srun: error: node09: task 3: {said}"]))
    assert not got.members
    (m,) = got.missing
    assert (m.node, m.task, m.reason) == ("node09", "3", reason)
    if sig == signal.SIGTERM:
        assert "terminated by signal SIGTERM" in m.detail
    else:
        assert "output ended" in m.detail and "task 3: Killed" in m.detail


def test_a_member_whose_check_fails_says_why_in_its_records():
    p = _member({"ENVDOCTOR_FLEET_NODE": "node05"}, "/nonexistent/python")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "envdoctor: error:" in err.decode()
    asm = Assembler("rr")
    for ln in out.decode().splitlines():
        asm.feed(ln)
    (m,) = asm.finish().missing
    assert m.reason == "error" and "/nonexistent/python" in m.detail


def test_hostlists():
    assert expand("node[01-03,10],gpu7") == ["node01", "node02", "node03", "node10", "gpu7"]
    assert expand("a[8-10]b") == ["a8b", "a9b", "a10b"]
    assert from_launcher(["pdsh", "-R", "exec", "-w", "node[01-02]", "cmd"]) == ["node01", "node02"]
    assert from_launcher(["srun", "--nodelist=n[1-2]", "-N2"]) == ["n1", "n2"]
    assert from_launcher(["mpirun", "-np", "4"]) == []
    with pytest.raises(ValueError):
        expand("node[05-01]")


def test_nodes_that_never_started_are_named_from_the_host_list_or_counted_from_the_task_count():
    c = Collected(members=[member("node01", None, {})])
    expected_missing(c, ["node01", "node02"], set(), Hints(["pdsh@x: node02: ssh exited with exit code 255"]), "")
    assert [(m.node, m.reason) for m in c.missing] == [("node02", "launcher_error")]
    assert "exit code 255" in c.missing[0].detail
    c = Collected(members=[member("n", "0", {}), member("n", "2", {})])
    expected_missing(c, [], {3}, Hints([]), "the launcher exited with exit code 1")
    assert [(m.node, m.task) for m in c.missing] == [("?", "1")]


# --- the summary -----------------------------------------------------------------------------------------

def gpu_fleet(n: int = 8, bad: str = "node17") -> Collected:
    good = gpu_report("550.54.15")
    members = [member(f"node{i:02d}", None, copy.deepcopy(good)) for i in range(1, n + 1)]
    members.append(member(bad, None, gpu_report("470.256.02")))
    return Collected(members=members)


def test_gpu_fleet_majority_and_the_outlier_with_its_exact_difference_and_rule():
    s = build(gpu_fleet(), None)
    d = s.to_dict()
    validate_summary(d)
    assert d["reported"] == 9 and d["expected"] == 9
    maj, out = d["groups"]
    assert maj["majority"] and maj["count"] == 8 and maj["errors"] == 0
    assert out["nodes"] == ["node17"] and out["worse"]
    keys = {(c["section"], c["key"]): c for c in out["differences"]}
    assert keys[("driver/CUDA", "driver")]["a"] == "550.54.15" and keys[("driver/CUDA", "driver")]["b"] == "470.256.02"
    assert keys[("findings", "ED102")]["direction"] == "worse"
    assert "470" in keys[("findings", "ED102")]["note"]
    ed102 = [(f["count"], f["nodes"]) for f in d["findings"] if f["id"] == "ED102"]
    assert ed102 == [(1, ["node17"])]
    assert s.exit_code == 1


def test_a_healthy_fleet_exits_0_and_a_harmless_outlier_does_not_matter():
    c = gpu_fleet()
    c.members.pop()  # no node17
    variant = gpu_report("550.54.15")
    variant["python"]["version"] = "3.10.14"  # differs, but nothing fails
    c.members.append(member("node30", None, variant))
    s = build(c, None)
    assert [g.worse for g in s.groups] == [False, False] and len(s.groups) == 2
    assert s.exit_code == 0


def test_recorded_real_reports_summary_text_json_markdown(tmp_path):
    for i, name in enumerate(["torch213.json"] * 3 + ["torch213-tv291.json", "mmcv-lite.json"]):
        (tmp_path / f"gpu-a{i + 1}.json").write_text((REPORTS / name).read_text())
    res = run_cli("fleet", "summarize", str(tmp_path), "--format", "json")
    assert res.returncode == 1, res.stderr
    d = json.loads(res.stdout)
    validate_summary(d)
    assert [g["count"] for g in d["groups"]] == [3, 1, 1]
    tv = next(g for g in d["groups"] if any(c["key"] == "torchvision" and c["section"] == "load"
                                            for c in g["differences"]))
    assert tv["worse"]
    # redacted by default: pseudonyms in the summary, the mapping only on stderr
    assert "gpu-a" not in res.stdout
    assert sorted(n for g in d["groups"] for n in g["nodes"]) == [f"node-0{i}" for i in range(1, 6)]
    assert re.search(r"node name node-01 = gpu-a1", res.stderr)
    text = run_cli("fleet", "summarize", str(tmp_path), "--no-redact")
    assert text.returncode == 1 and "majority 3 node(s)" in text.stdout and "gpu-a4" in text.stdout
    assert "operator torchvision::nms does not exist" in text.stdout
    md = run_cli("fleet", "summarize", str(tmp_path), "--format", "markdown")
    assert md.stdout.startswith("## envdoctor fleet: 5 of 5") and "| majority" in md.stdout
    assert "gpu-a" not in md.stdout


def test_pseudonyms_are_stable_with_a_names_file_and_never_in_the_summary(tmp_path):
    names = tmp_path / "names.json"
    p1 = Pseudonyms(str(names))
    s1 = build(gpu_fleet(3), p1).to_dict()
    p1.save()
    assert oct(names.stat().st_mode & 0o777) == "0o600"
    assert p1.mapping == {"node01": "node-01", "node02": "node-02", "node03": "node-03", "node17": "node-04"}
    c = gpu_fleet(3)
    c.members.insert(0, member("node00", None, gpu_report("550.54.15")))  # a new node, sorting first
    p2 = Pseudonyms(str(names))
    s2 = build(c, p2).to_dict()
    assert {k: p2.mapping[k] for k in p1.mapping} == p1.mapping
    assert p2.mapping["node00"] == "node-05"
    for s in (s1, s2):
        assert not re.search(r"node(0[0-3]|17)\b", json.dumps(s))


def test_fleet_diff_before_and_after_a_rollout(tmp_path):
    names = tmp_path / "names.json"
    before = gpu_fleet()
    after = gpu_fleet()
    after.members[-1] = member("node17", None, gpu_report("550.54.15"))  # node17 fixed
    after.members[1] = member("node02", None, gpu_report("470.256.02"))  # node02 broken by the rollout
    after.members.pop(3)  # node04 gives no report
    after.missing.append(Missing("node04", None, "timeout", "still running"))
    for name, c in (("a.json", before), ("b.json", after)):
        p = Pseudonyms(str(names))
        (tmp_path / name).write_text(json.dumps(build(c, p).to_dict()))
        p.save()
    res = run_cli("fleet", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "json")
    assert res.returncode == 1, res.stderr
    d = json.loads(res.stdout)
    m = json.loads(names.read_text())
    kinds = {(t["kind"], tuple(t["nodes"])): t for t in d["transitions"]}
    broken = kinds[("changed", (m["node02"],))]
    assert broken["worse"] and any(c["key"] == "ED102" and c["direction"] == "worse" for c in broken["changes"])
    fixed = kinds[("changed", (m["node17"],))]
    assert not fixed["worse"] and any(c["key"] == "ED102" and c["direction"] == "better" for c in fixed["changes"])
    assert kinds[("lost", (m["node04"],))]["worse"]
    assert d["unchanged"] == 6
    same = run_cli("fleet", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json"))
    assert same.returncode == 0 and "B is not worse than A" in same.stdout


@pytest.mark.parametrize("args, message", [
    (["fleet", "summarize", "/nonexistent/dir"], "no such file or directory"),
    (["fleet", "diff", "tests/data/reports/torch213.json", "tests/data/reports/torch213.json"],
     "is not an envdoctor fleet summary"),
    (["fleet", "summarize", "tests/data/reports", "--format", "yaml"], "--format yaml"),
    (["fleet", "run", "--", "/nonexistent/launcher"], "launcher '/nonexistent/launcher' not found"),
    (["fleet", "run", "--select", "ED9X9", "--", "true"], "--select ED9X9"),
    (["fleet", "run", "--expect", "node[9-1]", "--", "true"], "--expect node[9-1]"),
    (["fleet", "run", "--fleet-timeout", "0", "--", "true"], "--fleet-timeout 0: give a positive number"),
    (["fleet", "run"], "Missing argument"),
    (["fleet", "diff", "/nonexistent/a.json", "/nonexistent/b.json"], "cannot read /nonexistent/a.json"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_summarize_reads_stdin_and_counts_files_that_are_not_reports(tmp_path):
    log = "".join(ln for ls in lines_of([("nodeA", None, report("torch213.json")),
                                         ("nodeB", None, report("torch213.json"))], run="x") for ln in ls)
    (tmp_path / "notes.txt").write_text("not a report\n")
    res = subprocess.run([sys.executable, "-m", "envdoctor", "fleet", "summarize", "-", str(tmp_path / "notes.txt"),
                          "--no-redact", "--format", "json"], input=log, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    d = json.loads(res.stdout)
    assert d["reported"] == 2 and [(m["node"], m["reason"]) for m in d["missing"]] == [("notes", "not_a_report")]
    assert res.returncode == 1


def test_a_launcher_that_fails_before_any_node_shows_its_own_words():
    res = run_cli("fleet", "run", "--", "sh", "-c", "echo 'launcher: cannot reach the cluster' >&2; exit 3")
    assert res.returncode == 1, res.stderr
    assert "0 of 0 node(s) reported" in res.stdout and "no node reported" in res.stdout
    assert "launcher sh: exit code 3" in res.stdout and "cannot reach the cluster" in res.stdout


def test_node_names_inside_errors_and_titles_are_pseudonyms_too():
    rep = report("torch213-tv291.json")
    rep["components"]["torchvision"]["load"]["error"]["message"] = "/envs/gpu-a17/lib/_C.so: undefined symbol: x"
    rep["findings"][0]["title"] = "`import torchvision` fails on gpu-a17"
    c = Collected(members=[member("gpu-a17", None, rep), member("gpu-a18", None, report("torch213.json")),
                           member("gpu-a19", None, report("torch213.json"))])
    blob = json.dumps(build(c, Pseudonyms()).to_dict())
    assert "gpu-a17" not in blob and "/envs/node-01/lib/_C.so: undefined symbol" in blob
    assert "gpu-a17" in json.dumps(build(c, None).to_dict())


def test_fleet_diff_refuses_a_summary_of_another_major(tmp_path):
    s = build(gpu_fleet(2), None).to_dict()
    (tmp_path / "a.json").write_text(json.dumps(s))
    (tmp_path / "b.json").write_text(json.dumps(dict(s, schema="envdoctor.fleet/2")))
    res = run_cli("fleet", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert res.returncode == 2 and "of schema 'envdoctor.fleet/2'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_the_schema_and_the_code_name_the_same_reasons():
    from envdoctor.fleet.collect import REASONS

    assert tuple(FLEET_SCHEMA["properties"]["missing"]["items"]["properties"]["reason"]["enum"]) == REASONS
