"""Backups under short, drive-free names (issue 12 item 1), with Windows paths through ntpath, and the
same backup machinery run for real on this machine's files."""

from __future__ import annotations

import json
import ntpath
import os
from pathlib import Path

from envdoctor.fix import backup as bk
from tests.wheelfactory import tree_hash

STATE = r"C:\Users\张三\AppData\Local\envdoctor\state\0123abcd\txn\20260101-000000-1\backup"
PYD = r"C:\Users\张三\My Envs\open-mmlab\Lib\site-packages\mmcv\_ext.cp312-win_amd64.pyd"


def _windows_backup() -> bk.Backup:
    return bk.Backup(Path(STATE), flavour=ntpath)  # type: ignore[arg-type]


def test_a_windows_path_is_stored_under_a_short_name_without_a_drive():
    name = bk.store_name(PYD, ntpath)
    assert len(name) <= 20 and all(c not in name for c in ':\\/ ')
    stored = ntpath.join(STATE + r"\files", name)
    # one drive colon (the state directory's); the old layout appended the whole path: `filesC:\Users…`
    assert stored.count(":") == 1 and ntpath.splitdrive(stored)[0] == "C:"
    assert len(stored) < len(STATE) + 30 < 260


def test_one_windows_file_spelled_several_ways_has_one_backup_name():
    same = [PYD, PYD.upper(), PYD.replace("\\", "/"), "\\\\?\\" + PYD, r"C:\Users\张三\My Envs\x\..\open-mmlab"
            r"\Lib\site-packages\mmcv\_ext.cp312-win_amd64.pyd"]
    assert len({bk.store_name(p, ntpath) for p in same}) == 1
    unc = r"\\fileserver\share\envs\Lib\site-packages\mmcv\_ext.pyd"
    assert bk.store_name(unc, ntpath) == bk.store_name("\\\\?\\UNC" + unc[1:], ntpath)
    others = {bk.store_name(p, ntpath) for p in (PYD, unc, r"D:" + PYD[2:], PYD.replace("_ext", "_ext2"))}
    assert len(others) == 4


def test_on_posix_case_is_kept_apart():
    assert bk.store_name("/env/lib/A.py") != bk.store_name("/env/lib/a.py")


def test_a_windows_backup_knows_where_each_original_went():
    b = _windows_backup()
    b.index[PYD] = ["f", 0o644, 3, 1, 1, "", bk.store_name(PYD, ntpath)]
    assert b.stored(PYD).endswith("\\files\\" + bk.store_name(PYD, ntpath))


def _tree(root: Path) -> None:
    (root / "pkg with space" / "张三").mkdir(parents=True)
    (root / "pkg with space" / "张三" / "m.py").write_text("B = 2\n")
    (root / "pkg with space" / "_ext.so").write_bytes(b"\x7fELF" + b"\0" * 60)
    (root / "pkg with space" / "link").symlink_to("张三/m.py")
    (root / "top.py").write_text("C = 3\n")


def test_backup_and_restore_on_real_files_use_a_flat_store_and_an_index(tmp_path):
    site = tmp_path / "site"
    _tree(site)
    h = tree_hash(site)
    b = bk.Backup(tmp_path / "backup")
    b.add(str(site / "pkg with space"))
    b.add(str(site / "top.py"))
    stored = sorted(os.listdir(tmp_path / "backup" / "files"))
    assert len(stored) == 4 and all(len(n) == 20 and os.sep not in n for n in stored)
    leaves = {p: e for p, e in b.index.items() if e[0] != "d"}
    assert sorted(e[6] for e in leaves.values()) == stored  # the index leads back to each original path
    import shutil

    shutil.rmtree(site / "pkg with space")
    (site / "top.py").unlink()  # as pip does: a hard-linked backup keeps the old bytes
    (site / "top.py").write_text("changed\n")
    again = bk.Backup.load(tmp_path / "backup", json.loads(json.dumps(b.index)))  # as the journal keeps it
    assert again.restore() == []
    assert tree_hash(site) == h


def test_a_backup_written_in_the_old_layout_still_restores(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    f = site / "old.py"
    f.write_text("old\n")
    entry = bk.entry_of(str(f))
    assert entry is not None
    legacy = tmp_path / "backup" / "files"
    dst = Path(str(legacy) + str(f))
    dst.parent.mkdir(parents=True)
    os.link(f, dst)
    f.unlink()
    assert bk.Backup.load(tmp_path / "backup", {str(f): entry}).restore() == []
    assert f.read_text() == "old\n"
