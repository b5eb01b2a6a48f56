"""One fact layer: `check` and `fix` read the same facts the same way (envdoctor.fact_readers).

Each case below is a fact set on which the planner used to read the report its own way and so installed a
different wheel than the one `check` printed; the test asserts the plan's action is the check's advice."""

from __future__ import annotations

from pathlib import Path

import pytest

from envdoctor import fact_readers as fr
from envdoctor.facts import Component, LoadError, LoadResult, Package, PythonEnv, Report
from envdoctor.fix.plan import PlanOptions, make_plan
from envdoctor.rules import load_tables
from tests.diagnosed import diagnosed

PY = "/envs/x/bin/python"


def broken_ext(torch: str = "2.1.0+cu121", mmcv: tuple[str, str] = ("mmcv", "2.1.0"), os_name: str = "Linux",
               torch_runtime: str = "", extra: tuple[tuple[str, str], ...] = ()) -> Report:
    """A CUDA torch that imports; mmcv imports; mmcv._ext fails on an undefined torch symbol."""
    r = Report(python=PythonEnv(executable=PY, version="3.10.12", prefix="/envs/x", platform_tag="linux_x86_64"))
    r.host.os = os_name
    dist, ver = mmcv
    for name, v in (("torch", torch), (dist, ver), ("pip", "23.2.1"), *extra):
        r.packages[name] = Package(name=name, version=v, top_level=["mmcv"] if name == dist else [])
    cuda = torch.partition("+cu")[2]
    t = Component(name="torch", installed=True, version=torch, distribution="torch",
                  facts={"version_py": {"__version__": torch, "cuda": f"{cuda[:-1]}.{cuda[-1]}" if cuda else None},
                         "runtime": {"version": torch_runtime or torch}},
                  load=LoadResult(status="ok"))
    m = Component(name="mmcv", installed=True, version=ver, distribution=dist,
                  facts={"version_py": {"__version__": ver}, "distributions": [dist]}, load=LoadResult(status="ok"))
    e = Component(name="mmcv._ext", installed=True, distribution=dist, load=LoadResult(
        status="import_error", error=LoadError(type="ImportError", message=(
            "/envs/x/lib/python3.10/site-packages/mmcv/_ext.cpython-310-x86_64-linux-gnu.so: undefined symbol: "
            "_ZN3c104cuda20CUDACachingAllocator9allocatorE"))))
    r.components.update({c.name: c for c in (t, m, e)})
    return r


def advised_and_planned(report: Report, tables) -> tuple[list[str], list[str]]:
    """(the requirement check's first wheel fix installs, the requirement fix's plan installs)."""
    report = diagnosed(report, tables)
    advised = [fx for f in report.findings for fx in f.fixes if fx.strategy == "wheel"]
    assert advised, [f.id for f in report.findings]
    spec = next(tok.strip('"') for tok in advised[0].commands[-1].split() if "==" in tok)
    plan = make_plan(report, tables, PlanOptions())
    assert plan.actions, plan.notes
    return [spec], plan.actions[0].install


def test_plan_installs_the_wheel_check_advises_when_torchs_version_attribute_failed():
    # the probe records a runtime attribute it could not read as "error: ..."; the checks fall back to
    # torch/version.py, the planner used to take the error text for a version (and found no wheel)
    r = broken_ext(torch_runtime="error: AttributeError: module 'torch' has no attribute '__version__'")
    assert fr.torch_version(r) == "2.1.0+cu121"
    advised, planned = advised_and_planned(r, load_tables())
    assert planned == advised == ["mmcv==2.2.0"]


def test_plan_installs_the_wheel_check_advises_when_host_os_is_empty():
    # a report without host facts: the OS comes from the platform tag for both (was "" for the planner)
    r = broken_ext(os_name="")
    assert fr.os_name(r) == "linux"
    advised, planned = advised_and_planned(r, load_tables())
    assert planned == advised == ["mmcv==2.2.0"]


def test_plan_keeps_the_installed_mmcv_series_like_check():
    # a broken mmcv-full 1.x: check recommends the newest 1.x wheel; the planner used to pick mmcv 2.x
    r = broken_ext(torch="2.0.1+cu118", mmcv=("mmcv-full", "1.7.0"))
    assert fr.mmcv_series(r) == 1
    advised, planned = advised_and_planned(r, load_tables())
    assert planned == advised == ["mmcv-full==1.7.2"]


def test_a_consumer_added_with_rules_is_honoured_by_check_and_fix(tmp_path: Path):
    # mmfoo is no OpenMMLab package envdoctor ships a row for: only a --rules directory can name it
    r = broken_ext(torch="2.1.0+cu121", mmcv=("mmcv", "2.1.0"), extra=(("mmfoo", "1.0.0"),))
    shipped = load_tables()
    assert "mmfoo" not in fr.consumer_names(shipped) and fr.consumers(r, shipped) == {}
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.toml").write_text(
        '[[mmcv_consumer]]\npackage = "mmfoo"\nversion = ">=1.0.0"\nmmcv = ">=2.0.0rc4,<2.2.0"\n'
        'source = "https://example.invalid/mmfoo"\n')
    tables = load_tables([str(rules)])
    assert fr.consumers(r, tables) == {"mmfoo": "1.0.0"}
    advised, planned = advised_and_planned(r, tables)
    assert planned == advised == ["mmcv==2.1.0"]  # inside mmfoo's range, not the newest 2.2.0


def test_mmcv_distributions_come_from_the_flavour_table(tmp_path: Path):
    tables = load_tables()
    assert fr.mmcv_dist_names(tables) == ("mmcv", "mmcv-full", "mmcv-lite")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.toml").write_text('[[mmcv_flavour]]\ndistribution = "mmcv-fork"\nmmcv = ">=2.0.0"\nops = true\n'
                                     'source = "https://example.invalid/mmcv-fork"\n')
    r = broken_ext(mmcv=("mmcv-fork", "2.1.0"))
    r.components["mmcv"].facts["distributions"] = []
    assert fr.mmcv_dists(r, tables) == []
    assert fr.mmcv_dists(r, load_tables([str(rules)])) == ["mmcv-fork"]


@pytest.mark.parametrize(("host", "tag", "want"), [
    ("Linux", "", "linux"), ("Windows", "", "windows"), ("Darwin", "", "macos"),
    ("", "win_amd64", "windows"), ("", "macosx_11_0_arm64", "macos"), ("", "", "linux")])
def test_os_name(host: str, tag: str, want: str):
    r = Report()
    r.host.os, r.python.platform_tag = host, tag
    assert fr.os_name(r) == want


def test_state_and_messages_read_one_way():
    r = broken_ext()
    r.components["gone"] = Component(name="gone", installed=False)
    r.components["served"] = Component(name="served", installed=False, load=LoadResult(status="ok"))
    r.components["untried"] = Component(name="untried", installed=True)
    assert [fr.state(r, n) for n in ("torch", "mmcv._ext", "gone", "served", "untried", "absent")] == \
        ["ok", "import_error", "missing", "ok", "skipped", "missing"]
    assert fr.failed(r, "mmcv._ext") and not fr.failed(r, "gone")
    r.components["mmcv._ext"].load.error.message = "Traceback:\n  line\nImportError: the end"  # type: ignore
    assert fr.load_message(r, "mmcv._ext") == "Traceback:"
    assert fr.load_message(r, "mmcv._ext", last=True, limit=11) == "ImportError"


# Over every recorded fact set and every real test environment: tests/test_advice_is_action.py
