"""fix's verification forks from its before-probe's `import torch` (envdoctor/probe/held.py), and only where a
child of that process is what a fresh process would be.

A real torch (the cached `torch213` env, hard-linked: files are only ever added or replaced by rename here, so
the cache is never written). Each reused round is compared with a fresh probe of the same environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from envdoctor.probe import Holder, Target, collect_verified
from tests.conftest import real_env
from tests.envs import copy_venv, site_packages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="holding needs fork (Linux)")


@pytest.fixture
def env(tmp_path: Path) -> Path:
    dest = tmp_path / "env"
    copy_venv(real_env("torch213"), dest, link=True)
    # a hard link changes the file's ctime, an entry added changes its directory's: within a tick before the
    # probe starts, either could have changed after the probe read it, and the held process would not stand for a
    # fresh one (probe_hold.Baseline)
    time.sleep(0.05)
    return dest


def loads(report) -> dict[str, str]:
    return {name: c.load.status for name, c in report.components.items() if c.load is not None}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: its parent (us) has not reaped it yet
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def held_pid(hold: Holder) -> int:
    assert hold.loads is not None and hold.loads.held is not None and hold.loads.held.run is not None
    return hold.loads.held.run.proc.pid


def test_the_next_round_is_forked_and_sees_what_was_installed(env, tmp_path):
    target = Target(str(env / "bin" / "python"), "--python")
    hold = Holder()
    try:
        first, _ = collect_verified(target, [], timeout=120, hold=hold)
        assert first.load_probes is not None and not first.load_probes.reused
        assert loads(first)["torch"] == "ok"
        pid = held_pid(hold)
        # installed after the first round: a module in site-packages (the directory's cached listing is stale),
        # and a new .pth file with a path line and an import line (site runs it at start-up; the held process
        # must run it before forking)
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "edheld_mod.py").write_text("VALUE = 7\n")
        sp = site_packages(env)
        (sp / "edheld_pkg.py").write_text("X = 1\n")
        (sp / "edheld.pth").write_text(f"{extra}\nimport os; os.environ['EDHELD'] = 'ran'\n")
        stmt = "import os, edheld_mod, edheld_pkg; assert os.environ['EDHELD'] == 'ran' and edheld_mod.VALUE == 7"
        again, got = collect_verified(target, [stmt, "import no_such_module_xyz"], timeout=120, hold=hold)
        assert again.load_probes is not None and again.load_probes.reused
        assert held_pid(hold) == pid  # the same process, still held
        fresh, got_fresh = collect_verified(target, [stmt, "import no_such_module_xyz"], timeout=120)
        assert fresh.load_probes is not None and not fresh.load_probes.reused
        assert {s: r.status for s, r in got.items()} == {s: r.status for s, r in got_fresh.items()} == {
            stmt: "ok", "import no_such_module_xyz": "import_error"}
        assert loads(again) == loads(fresh)
        assert again.components["torch"].facts["runtime"]["version"] == fresh.components["torch"].facts["runtime"][
            "version"]
    finally:
        hold.close()
    assert not alive(pid)


@pytest.mark.parametrize("changed", ["a module torch imported", "a .pth file site ran"])
def test_a_changed_loaded_file_means_a_fresh_probe(env, changed):
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    (sp / "edheld_old.pth").write_text("import os\n")
    time.sleep(0.05)  # installed before the probe starts, not a tick before it (see the env fixture)
    hold = Holder()
    try:
        collect_verified(target, [], timeout=120, hold=hold)
        pid = held_pid(hold)
        path = sp / "torch" / "version.py" if changed.startswith("a module") else sp / "edheld_old.pth"
        # the same bytes in a new file, swapped in as an installer does: a fresh process would read the new file
        data = path.read_bytes()
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        again, got = collect_verified(target, ["import torch"], timeout=120, hold=hold)
        assert again.load_probes is not None and not again.load_probes.reused
        assert got["import torch"].status == "ok" and loads(again)["torch"] == "ok"
        assert hold.loads is None  # nothing held any more: the stale process ended
        assert not alive(pid)
    finally:
        hold.close()


@pytest.mark.parametrize("added", ["a module import torch looked for", "a second copy of one it loaded"])
def test_a_new_module_that_changes_import_torch_means_a_fresh_probe(env, tmp_path, added):
    """No file the held process loaded changes, yet a fresh `import torch` would differ: torch 2.13 looks for
    pydot at import (torch/fx/passes/graph_drawer.py: HAS_PYDOT) and remembers it is absent; a copy of a module
    it loaded, earlier on sys.path, would be the one a fresh process imports (review finding: a held round
    failed a statement a fresh process passes)."""
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    hold = Holder()
    try:
        collect_verified(target, [], timeout=120, hold=hold)
        pid = held_pid(hold)
        if added.startswith("a module"):
            (sp / "pydot.py").write_text("class Dot:\n    pass\n")
            stmt = "import torch.fx.passes.graph_drawer as g; assert g.HAS_PYDOT"
        else:
            # typing_extensions: loaded by `import torch` from site-packages; a copy in a .pth path line's
            # directory would come later on sys.path, so put one where the path finder looks first for it
            assert (sp / "typing_extensions.py").exists()
            early = tmp_path / "early"
            early.mkdir()
            (early / "typing_extensions.py").write_text("EDHELD_COPY = True\n" + (
                sp / "typing_extensions.py").read_text())
            (sp / "aaa_edheld.pth").write_text("import sys; sys.path.insert(0, %r)\n" % str(early))
            stmt = "import typing_extensions as t; assert t.EDHELD_COPY"
        again, got = collect_verified(target, [stmt], timeout=120, hold=hold)
        fresh, got_fresh = collect_verified(target, [stmt], timeout=120)
        assert got_fresh[stmt].status == "ok", got_fresh[stmt]
        assert again.load_probes is not None and not again.load_probes.reused
        assert got[stmt].status == "ok", got[stmt]
        assert not alive(pid)
    finally:
        hold.close()


DURING = ["a module torch imported", "a .pth file site ran", "a new .pth file", "a copy earlier on sys.path",
          "a package torch imported, removed", "a .pth file site ran, removed"]


@pytest.mark.parametrize("case", DURING)
def test_a_file_changed_while_the_first_round_ran_means_a_fresh_probe(env, tmp_path, case):
    """The held process keeps the state of what it loaded as the first round left it. A file an install beside
    that round changed after `import torch` read it would be kept as it is now, and the next round would
    pass for a fresh process while its torch is the old one: such a file makes the next round a fresh probe.
    The change is made by the first round's own verify statement, in a child of the held process: after the
    parent's `import torch`, before the round ends."""
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    (sp / "edheld_old.pth").write_text("import os\n")
    early = tmp_path / "early"
    early.mkdir()  # first on sys.path from the start, empty until the first round writes into it
    (sp / "aaa_edheld.pth").write_text("import sys; sys.path.insert(0, %r)\n" % str(early))
    time.sleep(0.05)  # installed before the probe starts, not a tick before it (see the env fixture)
    check = "import torch"
    if case == "a module torch imported":
        path, text = sp / "torch" / "version.py", (sp / "torch" / "version.py").read_text()
    elif case == "a .pth file site ran":
        path, text = sp / "edheld_old.pth", "import os\n"
    elif case == "a new .pth file":
        path, text = sp / "edheld_new.pth", "import os; os.environ['EDHELD'] = 'ran'\n"
        check = "import os; assert os.environ.get('EDHELD') == 'ran'"
    else:
        assert (sp / "typing_extensions.py").exists()
        path = early / "typing_extensions.py"
        text = "EDHELD_COPY = True\n" + (sp / "typing_extensions.py").read_text()
        check = "import typing_extensions as t; assert t.EDHELD_COPY"
    staged = tmp_path / "staged"
    staged.write_text(text)
    # a new file swapped in as an installer does (same bytes where it replaces one)
    swap = f"import os, shutil; shutil.copy({str(staged)!r}, {str(path) + '.new'!r}); os.replace(" \
           f"{str(path) + '.new'!r}, {str(path)!r})"
    if case.endswith("removed"):  # as pip uninstall does: gone from where it was loaded (here: renamed away)
        path = sp / "torchgen" if case.startswith("a package") else sp / "edheld_old.pth"
        assert path.exists()
        swap = f"import os; os.rename({str(path)!r}, {str(tmp_path / 'moved')!r})"
        check = "import json"
    hold = Holder()
    try:
        _, got_first = collect_verified(target, [swap], timeout=120, hold=hold)
        assert got_first[swap].status == "ok", got_first[swap]
        pid = held_pid(hold)
        again, got = collect_verified(target, [check], timeout=120, hold=hold)
        assert again.load_probes is not None and not again.load_probes.reused
        assert got[check].status == "ok", got[check]
        assert not alive(pid)
    finally:
        hold.close()


def test_without_torch_nothing_is_held(tmp_path):
    target = Target(str(real_env("bare") / "bin" / "python"), "--python")
    hold = Holder()
    try:
        report, _ = collect_verified(target, [], timeout=60, hold=hold)
        assert loads(report)["torch"] == "missing"
        assert hold.loads is None or hold.loads.held is None or hold.loads.held.run is None
        again, got = collect_verified(target, ["import json"], timeout=60, hold=hold)
        assert got["import json"].status == "ok" and again.load_probes is not None and not again.load_probes.reused
    finally:
        hold.close()


def _warm_package(sp: Path, heavy: str = "HEAVY = 1\n", init: str = "") -> None:
    """edwarm (the statements' package) imports edwarm_dep.heavy at import and edwarm_lazy only in a function."""
    (sp / "edwarm").mkdir()
    (sp / "edwarm" / "__init__.py").write_text("from .ops import f\n")
    (sp / "edwarm" / "ops.py").write_text("import edwarm_dep.heavy\n\ndef f():\n    import edwarm_lazy\n")
    (sp / "edwarm_dep").mkdir()
    (sp / "edwarm_dep" / "__init__.py").write_text(init)
    (sp / "edwarm_dep" / "part.py").write_text("")
    (sp / "edwarm_dep" / "heavy.py").write_text(heavy)
    (sp / "edwarm_lazy.py").write_text("")
    time.sleep(0.05)  # installed before the probe starts, not a tick before it (see the env fixture)


# true only in a child of a process that imported edwarm_dep.heavy (the warm-up) and not edwarm itself
WARMED = ("import sys; assert 'edwarm_dep.heavy' in sys.modules and 'edwarm' not in sys.modules "
          "and 'edwarm_lazy' not in sys.modules")


def _warm_done(hold: Holder) -> dict:
    done = Path(hold.loads.held.run.out_dir) / "warm.json"  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return json.loads(done.read_text())


def _replace(path: Path, text: str) -> None:
    """As an installer writes: a new file renamed over the old one (never in place: the env is hard-linked)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.parametrize("written", ["edwarm_new.pth", "edwarm_dep", "edwarm"])
def test_the_warm_up_imports_what_the_statements_need_from_other_packages(env, written):
    """The round's children start with edwarm_dep.heavy imported, unless the install writes it (the children
    import it then), or writes the statements' own package (its source now is not what will run: no warm-up)."""
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    _warm_package(sp)
    warmed = written == "edwarm_new.pth"
    hold = Holder()
    try:
        collect_verified(target, [], timeout=120, hold=hold)
        pid = held_pid(hold)
        assert hold.warm(["import edwarm"], avoid=[str(sp / written)])
        done = _warm_done(hold)
        assert done["stale"] is None and (done["imported"] >= 2 if warmed else done["imported"] == 0), done
        again, got = collect_verified(target, [WARMED, "import edwarm"], timeout=120, hold=hold)
        assert again.load_probes is not None and again.load_probes.reused and held_pid(hold) == pid
        assert {s: r.status for s, r in got.items()} == {WARMED: "ok" if warmed else "import_error",
                                                         "import edwarm": "ok"}
        # a fresh process has imported nothing before the statement: the first one fails there
        _, fresh = collect_verified(target, [WARMED, "import edwarm"], timeout=120)
        assert {s: r.status for s, r in fresh.items()} == {WARMED: "import_error", "import edwarm": "ok"}
    finally:
        hold.close()


STALE = {
    # name: (edwarm_dep/heavy.py, what the "install" does while the warm-up runs, the statement a fresh probe passes)
    "it imports a file the install writes": ("HEAVY = 1\n", None, "import edwarm_dep.heavy as h; assert h.HEAVY"),
    "an import raises": ("raise RuntimeError('edwarm_dep fails')\n", None, "import edwarm_dep"),
    "an import fails half-way": ("import edwarm_dep.part\nraise ImportError('needs edwarm_x')\n", None,
                                 "import edwarm_dep.part"),
    "a loaded file changes afterwards": ("HEAVY = 1\n", "after", "import edwarm_dep.heavy as h; assert h.HEAVY == 2"),
    "a loaded file changes while it runs": ("import time\ntime.sleep(2)\n", "during",
                                            "import edwarm_dep as d; assert d.VALUE == 2"),
    "a module it looked for appears while it runs": (
        "try:\n    import edwarm_opt\nexcept ImportError:\n    edwarm_opt = None\nimport time\ntime.sleep(2)\n",
        "during", "import edwarm_dep.heavy as h; assert h.edwarm_opt is not None"),
    # what cannot happen on this CPU-only machine, as torch's CUDA builds mark it: mmengine.device calls
    # torch.cuda.is_available() at import, which initialises the CUDA runtime (children forked then cannot use it)
    "an import initialises CUDA": ("import torch\ntorch._C._cuda_isInBadFork = lambda: True\n", None,
                                   "import torch"),
}


@pytest.mark.parametrize("case", list(STALE))
def test_a_warm_up_that_cannot_stand_for_a_fresh_import_means_a_fresh_probe(env, case):
    """Review findings: pip writes while the warm-up runs, so what it loaded or looked up is judged as it was
    when it began; a half-failed import, or CUDA initialised, leaves a process no fresh one is."""
    heavy, when, stmt = STALE[case]
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    _warm_package(sp, heavy, init="VALUE = 1\n")
    hold = Holder()
    try:
        collect_verified(target, [], timeout=120, hold=hold)
        pid = held_pid(hold)
        avoid = [str(sp / "edwarm_dep" / "heavy.py")] if case.startswith("it imports") else []
        assert hold.warm(["import edwarm"], avoid=avoid)
        if when == "during":
            time.sleep(0.7)  # the warm-up is in edwarm_dep.heavy's 2 s sleep
        elif when == "after":
            assert _warm_done(hold)["imported"] >= 2
        if case.startswith("a loaded file"):
            _replace(sp / "edwarm_dep" / "__init__.py", "VALUE = 2\n")
            _replace(sp / "edwarm_dep" / "heavy.py", "HEAVY = 2\n")
        elif case.startswith("a module it looked for"):
            (sp / "edwarm_opt.py").write_text("")
        assert bool(_warm_done(hold)["stale"]) is (when != "after"), _warm_done(hold)  # after: the round sees it
        again, got = collect_verified(target, [stmt], timeout=120, hold=hold)
        _, fresh = collect_verified(target, [stmt], timeout=120)
        assert again.load_probes is not None and not again.load_probes.reused
        assert got[stmt].status == fresh[stmt].status == "ok", (got[stmt], fresh[stmt])
        assert not alive(pid)
    finally:
        hold.close()


def test_a_warm_up_that_hangs_ends_the_held_process(env):
    target = Target(str(env / "bin" / "python"), "--python")
    sp = site_packages(env)
    _warm_package(sp, "import time\ntime.sleep(600)\n")
    hold = Holder()
    try:
        collect_verified(target, [], timeout=15, hold=hold)
        pid = held_pid(hold)
        assert hold.warm(["import edwarm"], avoid=[])
        start = time.monotonic()
        again, got = collect_verified(target, ["import json"], timeout=15, hold=hold)
        assert again.load_probes is not None and not again.load_probes.reused and got["import json"].status == "ok"
        # the warm-up's own deadline (15 s), then a fresh probe; without it the round waited for its deadline
        # (2 x 15 + 10 s) before the fresh probe
        assert time.monotonic() - start < 35
        assert not alive(pid)
    finally:
        hold.close()
