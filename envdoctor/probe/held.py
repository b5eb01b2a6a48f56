"""fix's before-probe, held for its verification (load_probe.py components --hold; scripts/probe_hold.py).

`import torch` is most of a probe's time. fix probes the environment, installs, and probes again: the second
probe forks its dependent children (torch.cuda, torchvision, mmcv, the plan's verify statements) from the
first probe's process, which has kept its `import torch` and waited. It does so only where a child of it is
what a fresh process would be: the install changed no file that process had loaded (module files, shared
objects, .pth files); a new .pth file is run there as site runs it at start-up. Otherwise that process says
so and ends, and the caller probes afresh (envdoctor.probe.collect_verified). Linux only (fork).

While the install runs, the held process imports the modules of other packages that the verify statements
will import (`warm`: scripts/import_closure.py reads them from the statements' package's source), so the
round's children start with them as they start with torch; what it loads is watched as the rest is.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

from envdoctor.probe.target import RunningScript, ScriptRun, read_files

Tick = Callable[[RunningScript], None]


class HeldProbe:
    """The process of one `load_probe.py components --hold` run, between its rounds."""

    def __init__(self) -> None:
        self.run: Optional[RunningScript] = None
        self.rounds = 0  # rounds asked for after the first
        self.round_dir = ""
        self.started = 0.0
        self.stale: list[str] = []  # why the last round could not be forked (files the install changed)
        self.warmed = 0  # the modules the warm-up imported before the last round

    def attach(self, run: RunningScript) -> None:
        self.run, self.round_dir, self.started = run, run.out_dir, time.monotonic()

    def wait_first(self, tick: Optional[Tick] = None) -> ScriptRun:
        """The first round, as RunningScript.wait gives it; the process is kept if it holds (else it ended)."""
        run = self.run
        assert run is not None
        if self._wait_held(tick):
            return self._snapshot()
        self.run = None  # it ended (or is past its deadline): read as any probe, and nothing to hold
        return run.wait(tick)

    def next_round(self, statements: list[str]) -> bool:
        """Ask the held process for one more round; False: there is none to ask (the caller probes afresh)."""
        run = self.run
        if run is None or run.proc.poll() is not None or run.proc.stdin is None:
            self.close()
            return False
        self.rounds += 1
        self.round_dir = os.path.join(run.scratch, f"out-{self.rounds + 1}")
        try:
            os.mkdir(self.round_dir)
        except OSError:
            self.close()
            return False
        if not self._send({"out": self.round_dir, "verify": statements}):
            return False
        self.started = time.monotonic()
        return True

    def warm(self, statements: list[str], avoid: list[str]) -> bool:
        """Ask the held process to import, while the install runs, the other packages' modules `statements`
        will import (never from a path in `avoid`: what the install writes or removes); the next round waits
        for it. False: no process is held."""
        run = self.run
        if run is None or run.proc.poll() is not None or run.proc.stdin is None or not statements:
            return False
        return self._send({"warm": statements, "avoid": avoid})

    def _send(self, request: dict[str, object]) -> bool:
        """One request line on the held process's stdin; False (and the process ended) when it cannot take it."""
        run = self.run
        assert run is not None and run.proc.stdin is not None
        try:
            run.proc.stdin.write((json.dumps(request) + "\n").encode())
            run.proc.stdin.flush()
        except OSError:
            self.close()
            return False
        return True

    def wait_round(self, tick: Optional[Tick] = None) -> Optional[ScriptRun]:
        """The round asked for, or None: the process could not stand for a fresh one (self.stale says why),
        died, or passed the deadline; it is ended then."""
        if self.run is not None and self._wait_held(tick):
            self.warmed = _warmed(self.run.out_dir)
            return self._snapshot()
        stale = read_files(self.round_dir).get("stale.json") if self.round_dir else None
        self.stale = [str(p) for p in (stale or {}).get("changed", [])] if isinstance(stale, dict) else []
        self.close()
        return None

    def close(self) -> None:
        """End the held process (its process group, killed: it holds nothing to save, and an interpreter with torch
        loaded takes a while to tear down) and remove its scratch directory."""
        run, self.run = self.run, None
        if run is None:
            return
        run.abort()

    def _wait_held(self, tick: Optional[Tick]) -> bool:
        run = self.run
        assert run is not None
        marker = os.path.join(self.round_dir, "held.json")
        while not os.path.exists(marker):
            if run.proc.poll() is not None or time.monotonic() - self.started > run.timeout:
                return os.path.exists(marker)
            if tick is not None:
                tick(run)
            time.sleep(0.01)
        return True

    def _snapshot(self) -> ScriptRun:
        run = self.run
        assert run is not None
        try:
            with open(os.path.join(run.scratch, "proc.stderr"), "rb") as f:
                stderr = f.read()[-8000:].decode("utf-8", "backslashreplace")
        except OSError:
            stderr = ""
        return ScriptRun(data=None, returncode=0, seconds=round(time.monotonic() - self.started, 3), stderr=stderr,
                         files=read_files(self.round_dir))


def _warmed(out_dir: str) -> int:
    """How many modules the warm-up imported (its warm.json in the first round's directory), 0 without one."""
    try:
        with open(os.path.join(out_dir, "warm.json"), encoding="utf-8") as f:
            data = json.load(f)
        return int(data.get("imported") or 0) if isinstance(data, dict) else 0
    except (OSError, ValueError, TypeError):
        return 0
