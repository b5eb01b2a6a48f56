"""tests/envs.py prune(): the envs of outdated specs go, the current ones and anything else stay."""

from __future__ import annotations

import os
import time

from tests import envs


def test_outdated_envs_are_removed_and_current_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(envs, "CACHE", tmp_path)
    current = envs.env_dir("torch213")
    stale = tmp_path / "torch213-0123456789ab"
    stale_unready = tmp_path / "mmcv-lite-abcdefabcdef"  # a build that never finished
    recent = tmp_path / "bare-aaaaaaaaaaaa"
    others = [tmp_path / "build-requirements", tmp_path / "notes-not-a-hash", tmp_path / "x-0123456789AB"]
    for d in [current, stale, stale_unready, recent, *others]:
        d.mkdir()
        (d / "file").write_text("x")
    for d in (current, stale, recent):
        (d / ".ready").write_text("{}")
    old = time.time() - 3 * 24 * 3600
    for d in (stale, stale_unready):
        os.utime(d / ".ready" if (d / ".ready").exists() else d, (old, old))

    removed = envs.prune(keep_seconds=24 * 3600)
    assert sorted(p.name for p in removed) == sorted([stale.name, stale_unready.name])
    assert not stale.exists() and not stale_unready.exists()
    assert all(d.exists() for d in [current, recent, *others])

    # in the checkout's own cache (keep 0) an outdated env goes however recently it was used
    assert [p.name for p in envs.prune(keep_seconds=0)] == [recent.name]
    assert current.exists() and all(d.exists() for d in others)


def test_the_env_being_built_is_left_alone(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setattr(envs, "CACHE", tmp_path)
    stale = tmp_path / "torch213-0123456789ab"
    stale.mkdir()
    with open(tmp_path / "torch213.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert envs.prune(keep_seconds=0) == []
    assert stale.exists()
    assert envs.prune(keep_seconds=0) == [stale] and not stale.exists()
