"""Windows paths of fix and the probes, computed here with the Windows flavour (issue 12 item 12).

No Windows here: the functions take the platform / path flavour as a parameter and are given
what Windows gives them (LOCALAPPDATA, file:///C:/ URLs, a user named 张三). Where Windows
behaves differently at run time (a rename refused while another process reads the file), that
behaviour is reproduced by the operation passed in, and named as such.
"""

from __future__ import annotations

import json
import ntpath
import posixpath
import zipfile
from pathlib import Path

from envdoctor.fix import lock
from envdoctor.fix.journal import Journal, write_json_durably
from envdoctor.fix.pip_runner import local_path, source_args
from envdoctor.fix.wheels import build_wheel, wheel_targets
from envdoctor.probe.pip_cache import cache_dir

LOCAL = r"C:\Users\张三\AppData\Local"


def test_file_urls_become_windows_paths():
    assert local_path("file:///C:/w", ntpath) == "C:\\w"
    assert local_path("file:///C:/Users/%E5%BC%A0%E4%B8%89/my%20wheels/", ntpath) == "C:\\Users\\张三\\my wheels\\"
    assert local_path("file:///c|/w", ntpath) == "c:\\w"
    assert local_path("file://fileserver/share/wheels", ntpath) == "\\\\fileserver\\share\\wheels"
    assert local_path(r"D:\wheels", ntpath) == r"D:\wheels"
    assert local_path("file:///srv/wheels", posixpath) == "/srv/wheels"


def test_a_local_index_is_find_links_without_index():
    assert source_args("file:///srv/w") == ["--no-index", "--find-links", "/srv/w"]


def test_lock_and_state_dir_under_localappdata_on_windows():
    assert lock.user_state_root({"LOCALAPPDATA": LOCAL}, "win32") == LOCAL + "\\envdoctor"
    assert lock.user_state_root({}, "win32", home=r"C:\Users\张三") == LOCAL + "\\envdoctor"
    assert lock.user_state_root({"XDG_CACHE_HOME": "/x/cache"}, "linux") == "/x/cache/envdoctor"
    assert lock.user_state_root({}, "linux", home="/home/u") == "/home/u/.cache/envdoctor"
    # a Store Python's writes under AppData are redirected per package: its state lives outside AppData
    store = r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python.3.12_3.12.2800.0_x64__qbz5n2kfra8p0"
    assert lock.is_store_python(store) and not lock.is_store_python(r"C:\Python312")
    assert lock.user_state_root({"LOCALAPPDATA": LOCAL, "USERPROFILE": r"C:\Users\张三"}, "win32",
                                packaged=True) == r"C:\Users\张三\.envdoctor"


def test_state_dir_of_a_system_python_is_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prefix = tmp_path / "usr"
    prefix.mkdir()
    assert lock.state_dir(prefix).parent == tmp_path / "cache" / "envdoctor" / "envs"
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert lock.state_dir(prefix) == prefix / ".envdoctor"


def test_pip_cache_under_localappdata_on_windows():
    assert str(cache_dir({"LOCALAPPDATA": LOCAL}, platform="win32")) == LOCAL + "\\pip\\Cache"
    assert cache_dir({}, platform="win32") is None  # pip has no default there either
    assert cache_dir({"LOCALAPPDATA": LOCAL, "PIP_NO_CACHE_DIR": "1"}, platform="win32") is None
    assert str(cache_dir({"PIP_CACHE_DIR": r"D:\pipcache"}, platform="win32")) == r"D:\pipcache"


def test_console_scripts_are_exe_launchers_on_windows(tmp_path):
    staging = tmp_path / "s"
    (staging / "tool").mkdir(parents=True)
    (staging / "tool" / "__init__.py").write_text("def main():\n    pass\n")
    entry_points = b"[console_scripts]\ntool = tool:main\n[gui_scripts]\ntoolw = tool:main\n"
    whl = build_wheel(staging, "tool", "1.0", tmp_path / "out",
                      extra_files={"tool-1.0.dist-info/entry_points.txt": entry_points})
    assert "tool-1.0.dist-info/entry_points.txt" in zipfile.ZipFile(whl).namelist()
    scheme = {"purelib": "/p/lib", "platlib": "/p/lib", "scripts": "/p/Scripts", "data": "/p", "include": "/p/inc"}
    win = {p.name for p in wheel_targets(whl, scheme, windows=True) if str(p.parent) == "/p/Scripts"}
    posix = {p.name for p in wheel_targets(whl, scheme) if str(p.parent) == "/p/Scripts"}
    assert win == {"tool.exe", "toolw.exe"} and posix == {"tool", "toolw"}


class _WindowsSharing:
    """Stands in for Windows' refusal (WinError 5/32) to replace or open a file while another process
    holds it without delete sharing: fails `times` times with PermissionError, then does the real call."""

    def __init__(self, real, times: int) -> None:
        self.real, self.times, self.calls = real, times, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.times:
            raise PermissionError(13, "Access is denied")
        return self.real(*args)


def test_journal_write_waits_for_a_reader_to_let_go(tmp_path):
    import os

    path = tmp_path / "journal.json"
    path.write_text("{}")
    replace = _WindowsSharing(os.replace, 3)
    write_json_durably(path, {"state": "begun"}, replace=replace)
    assert replace.calls == 4 and json.loads(path.read_text()) == {"state": "begun"}
    assert not (tmp_path / "journal.json.tmp").exists()


def test_check_reading_a_journal_being_replaced_still_sees_it(tmp_path):
    j = Journal.create(tmp_path, "fix")
    read = _WindowsSharing(lambda p: Path(p).read_text(encoding="utf-8"), 2)
    seen = Journal.load(j.dir, read=read)
    assert seen is not None and seen.id == j.id and read.calls == 3
    assert Journal.load(tmp_path / "txn" / "nothing") is None
