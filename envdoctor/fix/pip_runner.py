"""Run pip of the TARGET interpreter (`python -m pip`), never our own, and read the target's layout.

Every call is logged to the transaction directory. The environment lock's descriptor is
passed down so that a pip left running by a killed `envdoctor fix` still holds the lock.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote, urlparse

from envdoctor.fix.journal import wants_crash

# Facts pip's own decisions depend on, read from the target (stdlib only, Python 3.6+).
TARGET_INFO = r"""
import json, os, platform, sys, sysconfig
def fmt(info):
    v = "%d.%d.%d" % tuple(info[:3])
    if info[3] != "final":
        v += info[3][0] + str(info[4])
    return v
markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": fmt(sys.implementation.version),
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
paths = sysconfig.get_paths()
try:
    import pip
    pip_version = pip.__version__
except Exception:
    pip_version = None
print(json.dumps({"markers": markers, "paths": paths, "prefix": sys.prefix, "pip": pip_version}))
"""


@dataclass
class TargetInfo:
    python: str
    prefix: str
    markers: dict[str, str]
    paths: dict[str, str]
    pip: Optional[str]


def target_info(python: str, timeout: float = 60) -> TargetInfo:
    proc = subprocess.run([python, "-c", TARGET_INFO], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} did not report its layout: {proc.stderr.strip()[-300:]}")
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    return TargetInfo(python, d["prefix"], d["markers"], d["paths"], d["pip"])


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    return unquote(urlparse(url).path) if url.startswith("file://") else os.path.abspath(os.path.expanduser(url))


def source_args(index_url: Optional[str], find_links: Optional[str] = None, choice_index: Optional[str] = None,
                extra: Iterable[str] = ()) -> list[str]:
    """pip arguments saying where wheels come from. A user's --index-url replaces every other source;
    a local directory (or file:// URL) is used as find-links with --no-index: tests never touch the network."""
    if index_url:
        if is_local(index_url):
            return ["--no-index", "--find-links", local_path(index_url)]
        return ["--index-url", index_url]
    out: list[str] = []
    if choice_index:
        out += ["--index-url", choice_index]
    if find_links:
        out += ["--find-links", find_links]
    return out + list(extra)


def display(argv: list[str], python: str) -> str:
    """A command as the user would type it: `<python> -m pip ...`."""
    return " ".join(shlex.quote(a) for a in argv)


@dataclass
class PipResult:
    argv: list[str]
    returncode: int
    output: str
    seconds: float
    log: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 6) -> str:
        text = [ln for ln in self.output.strip().splitlines() if ln.strip()]
        return "\n".join(text[-lines:])


@dataclass
class Pip:
    python: str
    log_dir: Optional[Path] = None
    keep_fds: tuple[int, ...] = ()
    timeout: float = 3600
    calls: list[PipResult] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [self.python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]

    def env(self, isolated: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        if isolated:
            # local wheels only: the user's pip config and PIP_* settings (find-links, extra
            # indexes, constraints) must not add other sources or pins to what we install
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"  # pip's output is decoded as UTF-8, not in the console's code page
        # never let pip "default to user installation" when site-packages is not writable
        env["PYTHONNOUSERSITE"] = "1"
        env.pop("PIP_USER", None)
        env.pop("PYTHONPATH", None)  # pip must see the target's packages, not ours
        return env

    def run(self, *args: str, name: str = "pip", watch: Iterable[str] = (), isolated: bool = False) -> PipResult:
        """Run one pip command. With ENVDOCTOR_FIX_CRASH_AT=<name>:during this process kills itself
        once pip has written one of the `watch` paths (the test of a crash in the middle of pip)."""
        argv = self.argv(*args)
        start = time.monotonic()
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{len(self.calls):02d}-{name.replace(':', '-')}.log"
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env(isolated),
                                pass_fds=self.keep_fds if os.name == "posix" else ())
        if wants_crash(name, "during"):
            watched = list(watch)
            while proc.poll() is None and not any(os.path.lexists(p) for p in watched):
                time.sleep(0.005)
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        except BaseException:
            # Ctrl-C / SIGTERM: pip must be gone before anything is rolled back (a second Ctrl-C while
            # waiting leaves it to the lock: pip holds it until it exits, and recovery waits for it)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
        text = out.decode("utf-8", "replace")
        res = PipResult(argv, proc.returncode, text, round(time.monotonic() - start, 3),
                        str(log_path) if log_path else None)
        if log_path is not None:
            log_path.write_text(f"$ {display(argv, self.python)}\n{text}\n[exit {proc.returncode}]\n",
                                encoding="utf-8")
        self.calls.append(res)
        return res
