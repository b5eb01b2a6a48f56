"""A file a running process holds, on rollback/undo (issue 12 item 11): which process, what to close;
and pip's `~name` stash folders are pip's, not the user's.

Windows refuses to delete a loaded .pyd (WinError 5/32 -> errno EACCES); Linux does not, so that refusal
is the one constructed part here. The process holding the file is real (it opened one file and loaded a
gcc-built shared library with ctypes), and so is psutil's lookup of it."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys

import pytest

from envdoctor.fix import backup as bk
from envdoctor.fix import holders

HOLD = """
import ctypes, sys, time
f = open(sys.argv[1], "rb")
lib = ctypes.CDLL(sys.argv[2])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    site = tmp_path / "site" / "mmcv"
    site.mkdir(parents=True)
    (site / "data.json").write_text("{}")
    (tmp_path / "ext.c").write_text("int mmcv_ext_op(void) { return 1; }\n")
    so = site / "_ext.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(tmp_path / "ext.c")], check=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(site / "data.json"), str(so)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc, site
    finally:
        proc.kill()
        proc.wait()


def test_the_process_that_holds_a_file_is_found(held):
    proc, site = held
    found = holders.holders([str(site / "_ext.so"), str(site / "data.json"), str(site / "free.txt")])
    assert [(h.pid, h.how) for h in found[str(site / "_ext.so")]] == [(proc.pid, "loaded")]
    assert [(h.pid, h.how) for h in found[str(site / "data.json")]] == [(proc.pid, "open")]
    assert str(site / "free.txt") not in found


def test_a_refused_removal_names_the_holder_and_what_to_close(held):
    proc, site = held
    denied = PermissionError(errno.EACCES, "Access is denied")  # what Windows raises for a loaded .pyd
    lines = holders.explain([(str(site / "_ext.so"), denied), (str(site / "other.pyd"), denied)])
    assert f"pid {proc.pid}, loaded" in lines[0] and "close it" in lines[0]
    assert lines[1] == f"{site / 'other.pyd'}: Access is denied"
    # any other failure is not looked up: the process list is read only for the errors a holder causes
    assert holders.explain([(str(site / "_ext.so"), OSError(errno.ENOSPC, "No space left on device"))]) == [
        f"{site / '_ext.so'}: No space left on device"]


def test_a_restore_failure_no_process_causes_keeps_the_os_reason(held, tmp_path):
    """Backup.restore of a file a real process holds, failing for another reason (its backup is gone)."""
    proc, site = held
    b = bk.Backup(tmp_path / "backup")
    b.add(str(site / "data.json"))
    (site / "data.json").unlink()
    (site / "data.json").write_text('{"new": 1}')
    shutil.rmtree(tmp_path / "backup" / "files")  # the restore fails for real ...
    problems = b.restore()
    # ... with ENOENT, not a holder's error: the lookup is not made, the reason is the OS's
    assert len(problems) == 1 and "No such file" in problems[0] and "in use" not in problems[0]


def test_pips_stash_folders_are_pips_not_yours(tmp_path):
    from envdoctor.fix import owned, recover
    from tests.test_fix_plan import _pip_like_changes, _tree, _txn

    site = tmp_path / "site"
    _tree(site)
    j, before, _ = _txn(tmp_path, site)
    _pip_like_changes(site)
    j.save_json(owned.WRITTEN, owned.snapshot(before, bk.Roots((str(site),))))
    # after the transaction's records: a pip renamed a package aside while replacing it and could not
    # delete that folder (a held .pyd). (One the transaction's own pip left is in its records: deleted.)
    (site / "~kg").mkdir()
    (site / "~kg" / "_ext.pyd").write_bytes(b"MZ")
    (site / "six.py").write_text("# the user's\n")
    a = recover.assess(j)
    assert a.pip_leftovers == ["~kg"] and a.yours == ["six.py"]
    from envdoctor.render.fix import recovery_text

    text = recovery_text({"status": "rolled_back", "assessment": a.to_dict(), "kind": "fix", "txn": j.id})
    assert "pip's leftover folders" in text and "~kg" in text and "six.py" in text
