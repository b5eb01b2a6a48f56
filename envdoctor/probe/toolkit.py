"""The CUDA toolkit (nvcc, CUDA_HOME): needed only for building extensions from source."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from envdoctor.facts import CudaToolkit

_RELEASE = re.compile(r"release (\d+\.\d+)")
DEFAULT_HOME = "/usr/local/cuda"  # where torch's cpp_extension looks last, too


def parse_nvcc_version(text: str) -> Optional[str]:
    """"Cuda compilation tools, release 13.0, V13.0.88" -> "13.0"."""
    m = _RELEASE.search(text)
    return m.group(1) if m else None


def probe_toolkit(default_home: str = DEFAULT_HOME) -> CudaToolkit:
    """nvcc from $CUDA_HOME / $CUDA_PATH, else PATH, else the default prefix; its version."""
    tk = CudaToolkit()
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            tk.cuda_home, tk.cuda_home_source = os.environ[var], var
            break
    exe = "nvcc.exe" if os.name == "nt" else "nvcc"
    nvcc = None
    if tk.cuda_home and (Path(tk.cuda_home) / "bin" / exe).exists():
        nvcc = str(Path(tk.cuda_home) / "bin" / exe)
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None and (Path(default_home) / "bin" / exe).exists():
        nvcc = str(Path(default_home) / "bin" / exe)
    if nvcc:
        tk.nvcc = nvcc
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=10).stdout
            tk.version = parse_nvcc_version(out)
        except (OSError, subprocess.SubprocessError):
            pass
        if tk.cuda_home is None:
            tk.cuda_home = str(Path(nvcc).resolve().parent.parent)
            tk.cuda_home_source = "nvcc"
    return tk
