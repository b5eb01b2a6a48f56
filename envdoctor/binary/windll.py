"""Where Windows looks for the DLLs of an extension module imported after ``import torch``.

torch's ``__init__`` (``_load_dll_libraries``) adds directories with ``os.add_dll_directory``
before it loads its own DLLs; which ones depends on the torch release. So the list is read
from the installed torch's ``__init__.py`` source, not assumed: ``torch\\lib``, then
``<exec_prefix>\\Library\\bin`` (conda's DLLs: cudart, cudnn, MKL), ``<base_exec_prefix>\\Library\\bin``
in a venv, ``<userbase>\\Library\\bin``, and, only when none of those holds a ``cudart64*.dll``,
``%CUDA_PATH_Vxx_y%\\bin`` (default ``%ProgramFiles%\\NVIDIA GPU Computing Toolkit\\CUDA\\vxx.y``)
and NvToolsExt's ``bin\\x64`` (when no ``nvToolsExt64_1.dll`` is in them). A directory that does
not exist is skipped, as torch skips it.

The application directory (first after the module's own) is the folder of the running
``python.exe``: in a venv ``Scripts\\python.exe`` is a launcher that starts the base
interpreter, so it is the base prefix's folder, not ``Scripts\\``.

Paths are in the target's flavour (``ntpath`` for a Windows report read on Linux); ``local``
maps one to where its files can be read here (identity on Windows itself, a mounted drive
otherwise).
"""

from __future__ import annotations

import ntpath
import os
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Optional

# what each release's _load_dll_libraries adds, recognised in its source
_MARKERS = {
    "prefix": re.compile(r"\bsys\.exec_prefix\s*,\s*['\"]Library['\"]\s*,\s*['\"]bin['\"]"),
    "base_prefix": re.compile(r"\bsys\.base_exec_prefix\s*,\s*['\"]Library['\"]\s*,\s*['\"]bin['\"]"),
    "user_base": re.compile(r"get_config_var\(\s*['\"]userbase['\"]\s*\)"),
    "cuda_path": re.compile(r"['\"]CUDA_PATH_V['\"]"),
    "nvtoolsext": re.compile(r"['\"]NVTOOLSEXT_PATH['\"]"),
}


@dataclass
class WindowsPython:
    """The facts of the target interpreter the DLL directories depend on (paths in its flavour)."""

    executable: str = ""
    exec_prefix: str = ""
    base_exec_prefix: str = ""
    user_site: Optional[str] = None  # <userbase>\PythonXY\site-packages
    torch_dir: Optional[str] = None
    torch_cuda: Optional[str] = None  # torch.version.cuda, "12.4"
    environ: dict[str, str] = field(default_factory=dict)  # CUDA_PATH_V*, NVTOOLSEXT_PATH, ProgramFiles


def torch_adds(init_source: str) -> list[str]:
    """The kinds of directory a torch ``__init__.py`` adds on Windows ("torch_lib" first), from its source."""
    if "add_dll_directory" not in init_source:
        return ["torch_lib"]  # torch < 1.8: PATH only; its lib dir is what is searched in practice
    return ["torch_lib"] + [k for k, rx in _MARKERS.items() if rx.search(init_source)]


def user_base(user_site: Optional[str], flavour: ModuleType = ntpath) -> Optional[str]:
    """``%APPDATA%\\Python`` from ``%APPDATA%\\Python\\Python312\\site-packages`` (Store Python: its LocalCache)."""
    if not user_site:
        return None
    return flavour.dirname(flavour.dirname(user_site))


def application_dir(py: WindowsPython, flavour: ModuleType = ntpath) -> Optional[str]:
    """The folder of the process's python.exe: the base interpreter's in a venv."""
    if py.base_exec_prefix and py.exec_prefix and py.base_exec_prefix != py.exec_prefix:
        return py.base_exec_prefix
    return flavour.dirname(py.executable) if py.executable else (py.exec_prefix or None)


def dll_directories(py: WindowsPython, adds: list[str], local: Callable[[str], str] = lambda p: p,
                    flavour: ModuleType = ntpath) -> list[str]:
    """The directories torch adds with ``os.add_dll_directory``, in its order, in the target's flavour."""
    j = flavour.join

    def exists(p: str) -> bool:
        return os.path.isdir(local(p))

    def has(dirs: list[str], rx: str) -> bool:
        for d in dirs:
            try:
                if any(re.match(rx, n, re.I) for n in os.listdir(local(d))):
                    return True
            except OSError:
                pass
        return False

    found: list[str] = []
    ubase = user_base(py.user_site, flavour)
    first = {
        "torch_lib": j(py.torch_dir, "lib") if py.torch_dir else None,
        "prefix": j(py.exec_prefix, "Library", "bin") if py.exec_prefix else None,
        "base_prefix": (j(py.base_exec_prefix, "Library", "bin")
                        if py.base_exec_prefix and py.base_exec_prefix != py.exec_prefix else None),
        "user_base": j(ubase, "Library", "bin") if ubase else None,
    }
    for kind in ("torch_lib", "prefix", "base_prefix", "user_base"):
        p = first[kind]
        if kind in adds and p and exists(p) and p not in found:
            found.append(p)
    env = {k.upper(): v for k, v in py.environ.items()}
    pfiles = env.get("PROGRAMFILES", r"C:\Program Files")
    late: list[str] = []
    if "nvtoolsext" in adds and not has(found, r"^nvToolsExt64_1\.dll$"):
        late.append(j(env.get("NVTOOLSEXT_PATH", j(pfiles, "NVIDIA Corporation", "NvToolsExt")), "bin", "x64"))
    if "cuda_path" in adds and py.torch_cuda and not has(found, r"^cudart64.*\.dll$"):
        var = "CUDA_PATH_V" + py.torch_cuda.replace(".", "_")
        default = j(pfiles, "NVIDIA GPU Computing Toolkit", "CUDA", f"v{py.torch_cuda}")
        late.append(j(env.get(var, default), "bin"))
    return found + [p for p in late if exists(p) and p not in found]


def drive_mapper(drives: dict[str, str]) -> Callable[[str], str]:
    """``C:\\x\\y`` -> ``<drives['C:']>/x/y`` (a Windows disk mounted here, as WSL's /mnt/c); others unchanged."""
    norm = {k.upper().rstrip("\\/"): v for k, v in drives.items()}

    def local(p: str) -> str:
        drive, rest = ntpath.splitdrive(p)
        root = norm.get(drive.upper())
        if root is None:
            return p
        return os.path.join(root, *[part for part in re.split(r"[\\/]+", rest) if part])

    return local
