"""A real one-node Slurm cluster for the fleet tests: Debian's munged, slurmctld and slurmd, started in the
foreground from a temporary directory (config, state, sockets, logs), on free ports of 127.0.0.1,
stopped by pid. Nothing is written outside that directory; the system's own Slurm config is not used."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

NODE = "fleetnode"
DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")


def missing_binaries() -> list[str]:
    # the daemons live in /usr/sbin, which is not on every user's PATH
    return [d for d in DAEMONS if not (shutil.which(d) or os.path.exists(f"/usr/sbin/{d}"))]


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONF = """\
ClusterName=envdoctorfleet
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=main Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
"""


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _start(self, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.root / log, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def start(self, timeout: float = 60) -> None:
        d = self.root
        for sub in ("state", "spool", "munge"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "munge", 0o711)  # munged wants clients able to reach its socket
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = d / "munge" / "munge.socket"
        self._start([_bin("munged"), "-F", "--force", f"--key-file={key}", f"--socket={sock}",
                     f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munge' / 'munged.log'}",
                     f"--seed-file={d / 'munge' / 'munged.seed'}", "--num-threads=2"], "munged.out")
        self._wait(lambda: sock.exists(), timeout, "munged did not create its socket")
        self.conf.write_text(CONF.format(host=socket.gethostname(), ctld_port=_free_port(), d_port=_free_port(),
                                         munge_socket=sock, d=d, node=NODE))
        self._start([_bin("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._start([_bin("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)], "slurmd.out")
        self._wait(self._idle, timeout, "the Slurm node did not become idle")

    def _idle(self) -> bool:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}: {self.logs()}")
        r = subprocess.run([_bin("sinfo"), "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env,
                           timeout=20)
        return r.returncode == 0 and r.stdout.strip().startswith(("idle", "mixed"))

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.out", "munge/munged.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def stop(self) -> None:
        # slurmd, then slurmctld, then munged: each still has what it needs while it shuts down
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=10)
                except ProcessLookupError:
                    continue
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)

