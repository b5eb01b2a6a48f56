"""tests/envs.py's SourcePatch: an env's visible edit of an installed file (mmdet 3.3.0's mmcv cap).

Real files in a real directory laid out like a venv; the hard-linked case is the one the cached
envs use (`link_base=True`): the patched env must get its own file, the base must keep its own.
"""

import os

import pytest

from tests import envs


def _venv(root, text):
    site = root / "lib" / "python3.11" / "site-packages" / "pkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(text)
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"stale")
    return site / "__init__.py"


CAP = envs.SourcePatch("pkg/__init__.py", "maximum = '2.2.0'", "maximum = '2.3.0'", why="test")


def test_a_patch_replaces_the_file_and_leaves_a_hard_linked_base_as_it_was(tmp_path):
    base_init = _venv(tmp_path / "base", "x = 1\nmaximum = '2.2.0'\n")
    envs.copy_venv(tmp_path / "base", tmp_path / "derived", link=True)
    derived_init = tmp_path / "derived" / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py"
    assert os.path.samefile(base_init, derived_init)  # precondition: the copy shares the inode

    envs.apply_patch(tmp_path / "derived", CAP)

    assert derived_init.read_text() == "x = 1\nmaximum = '2.3.0'\n"
    assert base_init.read_text() == "x = 1\nmaximum = '2.2.0'\n"
    assert not (derived_init.parent / "__pycache__" / "__init__.cpython-311.pyc").exists()
    assert (base_init.parent / "__pycache__" / "__init__.cpython-311.pyc").read_bytes() == b"stale"


@pytest.mark.parametrize("text", ["x = 1\n", "maximum = '2.2.0'\nmaximum = '2.2.0'\n"])
def test_a_patch_that_does_not_match_exactly_once_fails_the_build(tmp_path, text):
    init = _venv(tmp_path / "env", text)
    with pytest.raises(envs.EnvBuildError, match="occurs [02] times, not once"):
        envs.apply_patch(tmp_path / "env", CAP)
    assert init.read_text() == text


def test_patches_change_the_cache_key_and_specs_without_patches_keep_theirs(monkeypatch):
    # the keys of the envs without patches are those the spec had before patches existed
    # (repr(spec) alone): every cached env on disk stays valid
    monkeypatch.setitem(envs.SPECS, "t-plain", envs.EnvSpec(installs=(("pkg==1",),)))
    monkeypatch.setitem(envs.SPECS, "t-patched", envs.EnvSpec(installs=(("pkg==1",),), patches=(CAP,)))
    assert envs.env_dir("t-plain").name == "t-plain-%s" % envs.hashlib.sha256(
        repr(envs.SPECS["t-plain"]).encode()).hexdigest()[:12]
    assert envs._key("t-patched") != envs._key("t-plain")
