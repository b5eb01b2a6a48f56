"""Real wheels for the fix tests, built from scratch: small stand-ins for torch, torchvision and
mmcv that pip installs for real. mmcv's `_ext` is a real CPython extension compiled by gcc
for the target interpreter; the broken variants fail for real (no `_ext`, an `_ext` with an
undefined symbol, a wheel whose zip is corrupt half-way through).

Directories made by `build_all(dest, python)`:
  broken/   what the test environments start from: mmcv 2.2.0 built without ops, mmcv-lite
            2.2.0, torch 2.13.0+cpu, torchvision 0.29.1 (needs torch 2.14: import fails)
  index/    the "index" a good fix installs from: mmcv 2.2.0 with a working _ext, its
            requirement mmcv-fakedep 1.0, torchvision 0.28.0 (pairs with torch 2.13),
            torchvision 0.29.1, torch 2.14.1
  badext/   mmcv 2.2.0 whose _ext has an undefined symbol (installs fine, import fails)
  corrupt/  a good mmcv 2.2.0 and its requirement mmcv-fakedep 1.0 whose zip has a bad CRC in its last
            member: the second wheel of one pip install fails half-way through
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

from envdoctor.fix.wheels import build_wheel

EXT_C = r"""
#include <Python.h>
%(decl)s
static PyObject *cuda_version(PyObject *self, PyObject *args) { %(body)s return PyUnicode_FromString("not available"); }
static PyObject *compiler_version(PyObject *self, PyObject *args) { return PyUnicode_FromString("GCC test"); }
static PyMethodDef methods[] = {
    {"get_compiling_cuda_version", cuda_version, METH_NOARGS, NULL},
    {"get_compiler_version", compiler_version, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { %(init)s return PyModule_Create(&def); }
"""

TORCH_INIT = '''\
"""A stand-in for torch: enough for envdoctor's probe (version, cuda, tensor().tolist())."""
from . import version
__version__ = version.__version__


class _Cuda:
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def get_arch_list():
        return []


cuda = _Cuda()


class _Tensor:
    def __init__(self, data):
        self.data = data

    def tolist(self):
        return self.data


def tensor(data):
    return _Tensor(data)
'''

MMCV_OPS = '''\
import importlib

_ext = importlib.import_module("mmcv._ext")  # as mmcv.utils.ext_loader.load_ext('_ext', [...]) does

assert _ext.get_compiling_cuda_version() == "not available"


class ModulatedDeformConv2dPack:
    pass


class DeformConv2dPack:
    pass
'''


def _python_facts(python: str) -> dict[str, str]:
    code = ("import json, sys, sysconfig; print(json.dumps({'include': sysconfig.get_paths()['include'], "
            "'suffix': sysconfig.get_config_var('EXT_SUFFIX'), 'tag': 'cp%d%d' % sys.version_info[:2], "
            "'plat': sysconfig.get_platform().replace('-', '_').replace('.', '_')}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def compile_ext(python: str, out: Path, broken: bool = False) -> Path:
    """gcc-build `_ext<EXT_SUFFIX>` for `python`; `broken` makes it need a symbol no library defines."""
    facts = _python_facts(python)
    src = Path(tempfile.mkdtemp(prefix="wheelfactory-")) / "_ext.c"  # never inside the wheel's tree
    src.write_text(EXT_C % {
        "decl": "int envdoctor_test_missing_symbol(void);" if broken else "",
        "body": "",
        "init": "if (envdoctor_test_missing_symbol() != 1) return NULL;" if broken else "",
    })
    target = out / f"_ext{facts['suffix']}"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", f"-I{facts['include']}", str(src), "-o", str(target)],
                   check=True, capture_output=True)
    return target


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def _mmcv_files(version: str) -> dict[str, str]:
    files = {"mmcv/__init__.py": "from .version import __version__\n",
             "mmcv/version.py": f"__version__ = '{version}'\n",
             "mmcv/ops/__init__.py": MMCV_OPS}
    # some bulk, so that pip writes many files and a crash can land in the middle of it
    for i in range(40):
        files[f"mmcv/cnn/layer_{i:02d}.py"] = f"LAYER = {i}\n" + "# padding\n" * 50
    return files


def mmcv_wheel(out: Path, python: str, *, name: str = "mmcv", version: str = "2.2.0", ext: str = "good",
               requires: tuple[str, ...] = ()) -> Path:
    """ext: good | broken | none (a pure wheel, like mmcv built without torch or mmcv-lite)."""
    facts = _python_facts(python)
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp) / "w", _mmcv_files(version))
        if ext != "none":
            compile_ext(python, root / "mmcv", broken=(ext == "broken"))
            tag = f"{facts['tag']}-{facts['tag']}-{facts['plat']}"
            return build_wheel(root, name, version, out, tag=tag, purelib=False, requires=requires)
        return build_wheel(root, name, version, out, requires=requires)


def torch_wheel(out: Path, version: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp) / "w", {"torch/__init__.py": TORCH_INIT,
                                       "torch/version.py": f"__version__ = '{version}'\ncuda = None\ndebug = False\n"})
        return build_wheel(root, "torch", version, out)


def torchvision_wheel(out: Path, version: str, needs_torch: str, works: bool) -> Path:
    init = ("import torch\nfrom . import ops\n__version__ = %r\n" % version if works else
            "import torch\nraise RuntimeError('operator torchvision::nms does not exist')\n")
    ops = "def nms(boxes, scores, iou):\n    import torch\n    return torch.tensor([0])\n"
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp) / "w", {"torchvision/__init__.py": init, "torchvision/ops.py": ops,
                                       "torchvision/version.py": f"__version__ = '{version}'\ncuda = None\n"})
        return build_wheel(root, "torchvision", version, out, requires=(f"torch{needs_torch}",))


def fakedep_wheel(out: Path) -> Path:
    files = {"mmcv_fakedep/__init__.py": "OK = True\n"}
    files.update({f"mmcv_fakedep/part_{i:02d}.py": f"PART = {i}\n" for i in range(20)})
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(Path(tmp) / "w", files)
        return build_wheel(root, "mmcv-fakedep", "1.0", out)


def corrupt_last_member(whl: Path) -> Path:
    """Flip a byte inside the data of the archive's last file member (before the dist-info ones are
    read, pip has already written the others): pip fails with a CRC error half-way through."""
    with zipfile.ZipFile(whl) as zf:
        infos = [i for i in zf.infolist() if not i.filename.endswith("/") and ".dist-info/" not in i.filename]
        victim = infos[-1]
    data = bytearray(whl.read_bytes())
    # local header: 30 bytes + name + extra, then the compressed data
    off = victim.header_offset
    name_len = int.from_bytes(data[off + 26:off + 28], "little")
    extra_len = int.from_bytes(data[off + 28:off + 30], "little")
    start = off + 30 + name_len + extra_len
    data[start + victim.compress_size // 2] ^= 0xFF
    whl.write_bytes(bytes(data))
    return whl


def build_all(dest: Path, python: str) -> dict[str, Path]:
    dirs = {k: dest / k for k in ("broken", "index", "badext", "corrupt")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    b = dirs["broken"]
    mmcv_wheel(b, python, ext="none")
    mmcv_wheel(b, python, name="mmcv-lite", ext="none")
    torch_wheel(b, "2.13.0+cpu")
    torchvision_wheel(b, "0.29.1", ">=2.14.0", works=False)
    i = dirs["index"]
    mmcv_wheel(i, python, ext="good", requires=("mmcv-fakedep>=1.0",))
    fakedep_wheel(i)
    torchvision_wheel(i, "0.28.0", "==2.13.0", works=True)
    torchvision_wheel(i, "0.29.1", ">=2.14.0", works=False)
    torch_wheel(i, "2.14.1")
    mmcv_wheel(dirs["badext"], python, ext="broken")
    mmcv_wheel(dirs["corrupt"], python, ext="good", requires=("mmcv-fakedep>=1.0",))
    corrupt_last_member(fakedep_wheel(dirs["corrupt"]))
    return dirs


if __name__ == "__main__":
    import sys

    out = build_all(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else sys.executable)
    for k, v in out.items():
        print(k, sorted(p.name for p in v.iterdir()))


def tree_listing(root: Path) -> dict[str, str]:
    """Every entry under `root` -> its type, permission bits and content digest (bytes of files, target of
    symlinks). __pycache__ is included: nothing in the fix may leave byte-code behind."""
    import hashlib
    import os
    import stat

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            h = hashlib.sha256()
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            out[os.path.relpath(p, root)] = f"{kind:o}:{stat.S_IMODE(st.st_mode):o}:{h.hexdigest()}"
    return out


def hash_of(listing: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(f"{k}\0{v}" for k, v in sorted(listing.items())).encode()).hexdigest()


def tree_hash(root: Path) -> str:
    """One sha256 over paths + types + modes + bytes of everything under `root` (see tree_listing)."""
    return hash_of(tree_listing(root))
