"""The mmcv._ext stand-in (mmcv's kernel signatures) and the .pth import hook."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from envdoctor.compat import ext, hook, ops

PY = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _case(modulated, B=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, 5, 6, generator=gen, dtype=torch.float64)
    off = torch.round(torch.randn(B, 2 * 18, 5, 6, generator=gen, dtype=torch.float64) * 2048) / 1024
    w = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64)
    m = torch.rand(B, 18, 5, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    g = torch.randn(B, 4, 5, 6, generator=gen, dtype=torch.float64)
    return x, off, w, m, b, g


def _autograd(modulated, x, off, w, m, b, g):
    leaves = [t.clone().requires_grad_() for t in ((x, off, m, w, b) if modulated else (x, off, w))]
    if modulated:
        out = ops.modulated_deform_conv2d(*leaves, 1, 1, 1, 2, 2, backend="torch")
    else:
        out = ops.deform_conv2d(*leaves, 1, 1, 1, 2, 2, backend="torch")
    out.backward(g)
    return out.detach(), [t.grad for t in leaves]


def test_dcn_v1_kernels_with_mmcv_signatures():
    x, off, w, m, b, g = _case(False)
    want_out, (gx, goff, gw) = _autograd(False, x, off, w, m, b, g)
    params = dict(kW=3, kH=3, dW=1, dH=1, padW=1, padH=1, dilationW=1, dilationH=1, group=2,
                  deformable_group=2)
    output = x.new_empty(want_out.shape)
    columns, ones = x.new_empty(0), x.new_empty(0)
    ext.deform_conv_forward(x, w, off, output, columns, ones, im2col_step=2, **params)
    assert (output - want_out).abs().max() <= 1e-12
    assert columns.shape == (0,) and ones.shape == (0,)  # scratch buffers left alone, like mmcv
    grad_input, grad_offset = torch.zeros_like(x), torch.zeros_like(off)
    ext.deform_conv_backward_input(x, off, g, grad_input, grad_offset, w, columns, im2col_step=2,
                                   **params)
    assert (grad_input - gx).abs().max() <= 1e-12
    assert (grad_offset - goff).abs().max() <= 1e-12
    grad_weight = torch.zeros_like(w)
    ext.deform_conv_backward_parameters(x, off, g, grad_weight, columns, ones, scale=1,
                                        im2col_step=2, **params)
    assert (grad_weight - gw).abs().max() <= 1e-12
    # accumulates with scale like addmm_
    ext.deform_conv_backward_parameters(x, off, g, grad_weight, columns, ones, scale=0.5,
                                        im2col_step=2, **params)
    assert (grad_weight - 1.5 * gw).abs().max() <= 1e-12
    # mmcv's host-side checks
    with pytest.raises(RuntimeError, match="smaller than kernel"):
        ext.deform_conv_forward(x[:, :, :2], w, off[:, :, :2], output, columns, ones,
                                im2col_step=2, **dict(params, padH=2))
    with pytest.raises(RuntimeError, match="im2col_step"):
        ext.deform_conv_forward(x, w, off, output, columns, ones, im2col_step=0, **params)


def test_modulated_kernels_with_mmcv_signatures():
    x, off, w, m, b, g = _case(True)
    want_out, (gx, goff, gm, gw, gb) = _autograd(True, x, off, w, m, b, g)
    params = dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
                  dilation_h=1, dilation_w=1, group=2, deformable_group=2, with_bias=True)
    ones, columns = x.new_empty(0), x.new_empty(0)
    output = x.new_empty(want_out.shape)
    ext.modulated_deform_conv_forward(x, w, b, ones, off, m, output, columns, **params)
    assert (output - want_out).abs().max() <= 1e-12
    grads = [torch.zeros_like(t) for t in (x, w, b, off, m)]
    ext.modulated_deform_conv_backward(x, w, b, ones, off, m, columns, *grads, g, **params)
    for got, want in zip(grads, (gx, gw, gb, goff, gm)):
        assert (got - want).abs().max() <= 1e-12
    # without bias: mmcv passes an empty "fake" bias tensor
    fake = x.new_empty(0)
    output2 = x.new_empty(want_out.shape)
    ext.modulated_deform_conv_forward(x, w, fake, ones, off, m, output2, columns,
                                      **dict(params, with_bias=False))
    assert (output2 - (want_out - b.view(1, -1, 1, 1))).abs().max() <= 1e-12
    with pytest.raises(RuntimeError, match="Input shape and kernel shape won't match"):
        ext.modulated_deform_conv_forward(x, w, b, ones, off, m, output, columns,
                                          **dict(params, kernel_h=2))
    with pytest.raises(RuntimeError, match="Input shape and kernel channels won't match"):
        ext.modulated_deform_conv_forward(x, w, b, ones, off, m, output, columns,
                                          **dict(params, group=1))


def test_every_mmcv_name_exists_and_the_rest_explain_themselves():
    assert len(ext.MMCV_EXT_NAMES) == len(set(ext.MMCV_EXT_NAMES)) == 112
    for name in ext.MMCV_EXT_NAMES:
        assert callable(getattr(ext, name)), name
    for name in set(ext.MMCV_EXT_NAMES) - set(ext.IMPLEMENTED):
        with pytest.raises(ext.CompatOpUnavailableError) as info:
            getattr(ext, name)(torch.zeros(1))
        msg = str(info.value)
        assert ("mmcv._ext.%s is not available" % name) in msg and "envdoctor fix" in msg
    assert isinstance(ext.get_compiler_version(), str) and "envdoctor-compat" in ext.get_compiler_version()
    assert "envdoctor-compat" in ext.get_compiling_cuda_version()
    # names added by later mmcv versions pass mmcv's hasattr check too
    assert hasattr(ext, "some_future_op_forward") and not hasattr(ext, "_private")


# ---------------------------------------------------------------------------
# hook, in subprocesses against a fake mmcv package in a temporary site dir
# ---------------------------------------------------------------------------

FAKE_MMCV_INIT = "__version__ = '0.fake'\n"
FAKE_EXT_LOADER = textwrap.dedent('''
    import importlib
    def load_ext(name, funcs):
        ext = importlib.import_module('mmcv.' + name)
        for fun in funcs:
            assert hasattr(ext, fun), f'{fun} miss in module {name}'
        return ext
''')


@pytest.fixture
def site(tmp_path):
    sp = tmp_path / "site-packages"
    (sp / "mmcv" / "utils").mkdir(parents=True)
    (sp / "mmcv" / "__init__.py").write_text(FAKE_MMCV_INIT)
    (sp / "mmcv" / "utils" / "__init__.py").write_text("")
    (sp / "mmcv" / "utils" / "ext_loader.py").write_text(FAKE_EXT_LOADER)
    return sp


# The test venv may have envdoctor installed (tests/run.sh installs it editable): hide it, so the
# subprocess is a target environment where only the copied compat package exists.
BLOCK_ENVDOCTOR = (
    "import sys\n"
    "class _NoEnvdoctor:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'envdoctor' or name.startswith('envdoctor.'):\n"
    "            raise ImportError('envdoctor is not installed here')\n"
    "sys.meta_path.insert(0, _NoEnvdoctor())\n"
)


def _py(site, code, env_extra=None):
    env = dict(os.environ)
    env.pop("ENVDOCTOR_COMPAT", None)
    env["PYTHONPATH"] = ""  # envdoctor itself must not be importable: only the copy in site
    env.update(env_extra or {})
    prog = BLOCK_ENVDOCTOR + "import site, sys; site.addsitedir(%r)\n" % str(site) + textwrap.dedent(code)
    return subprocess.run([PY, "-c", prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=str(site.parent), timeout=300)


LOAD = """
from mmcv.utils.ext_loader import load_ext
e = load_ext('_ext', ['modulated_deform_conv_forward', 'modulated_deform_conv_backward',
                      'deform_conv_forward', 'nms', 'roi_align_forward'])
import mmcv._ext
print('compat', getattr(e, '__envdoctor_compat__', False), e is mmcv._ext)
try:
    import envdoctor
    print('envdoctor importable')
except ImportError:
    print('envdoctor not importable')
"""


def test_enable_disable_roundtrip(site):
    before = set(os.listdir(str(site)))
    created = hook.enable(site)
    assert [p.name for p in created] == ["_envdoctor_compat", "_envdoctor_compat.pth"]
    assert (site / "_envdoctor_compat" / "ext.py").is_file()
    assert not list((site / "_envdoctor_compat").glob("__pycache__"))
    assert (site / "_envdoctor_compat.pth").read_text() == hook.pth_line()
    assert hook.enable(site) == created  # idempotent
    removed = hook.disable(site)
    assert sorted(removed) == sorted(created)
    assert set(os.listdir(str(site))) == before
    assert hook.disable(site) == []
    with pytest.raises(FileNotFoundError):
        hook.enable(site / "nope")


def test_hook_serves_absent_ext_once_and_off_switch(site):
    p = _py(site, LOAD)
    assert p.returncode != 0 and "No module named 'mmcv._ext'" in p.stderr
    hook.enable(site)
    # imported twice: still one notice
    p = _py(site, LOAD + "\nfrom mmcv.utils.ext_loader import load_ext; load_ext('_ext', ['nms'])\n")
    assert p.returncode == 0, p.stderr
    assert "compat True True" in p.stdout and "envdoctor not importable" in p.stdout
    assert p.stderr.count("envdoctor-compat: serving mmcv._ext") == 1
    assert "no compiled mmcv._ext is installed" in p.stderr
    for off in ("0", "off", "false"):
        p = _py(site, LOAD, {"ENVDOCTOR_COMPAT": off})
        assert p.returncode != 0 and "ModuleNotFoundError: No module named 'mmcv._ext'" in p.stderr
        assert "envdoctor-compat" not in p.stderr


def test_hook_falls_back_when_the_real_extension_fails_to_load(site):
    # a broken compiled module: the loader raises ImportError ("invalid ELF header" on Linux)
    so = site / "mmcv" / ("_ext" + __import__("sysconfig").get_config_var("EXT_SUFFIX"))
    so.write_bytes(b"this is not a shared object")
    p = _py(site, "import mmcv._ext")
    assert p.returncode != 0 and "ImportError" in p.stderr
    hook.enable(site)
    p = _py(site, LOAD)
    assert p.returncode == 0, p.stderr
    assert "compat True True" in p.stdout
    assert "the real mmcv._ext failed to load: ImportError" in p.stderr
    assert p.stderr.count("envdoctor-compat: serving") == 1


def test_hook_leaves_a_working_ext_alone_unless_forced(site):
    (site / "mmcv" / "_ext.py").write_text(
        "def modulated_deform_conv_forward(): pass\n"
        "def modulated_deform_conv_backward(): pass\n"
        "def deform_conv_forward(): pass\nnms = roi_align_forward = None\nREAL = True\n")
    hook.enable(site)
    p = _py(site, "import mmcv._ext as e; print('real', getattr(e, 'REAL', False))")
    assert p.returncode == 0, p.stderr
    assert "real True" in p.stdout and "envdoctor-compat" not in p.stderr
    p = _py(site, LOAD, {"ENVDOCTOR_COMPAT": "force"})
    assert p.returncode == 0 and "compat True True" in p.stdout
    assert "forced by ENVDOCTOR_COMPAT=force" in p.stderr


def test_pth_registers_only_a_finder_without_importing_torch(site):
    hook.enable(site)
    p = _py(site, """
import sys
print('torch' in sys.modules, any(getattr(f, 'envdoctor_compat_finder', False) for f in sys.meta_path))
print(sorted(m for m in sys.modules if m.startswith('_envdoctor_compat')))
""")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "False True"
    assert lines[1] == "['_envdoctor_compat', '_envdoctor_compat.hook']"
    assert p.stderr == ""
    # cost of processing the .pth line, measured in-process
    p = _py(site, """
import time, importlib, sys
for m in [m for m in sys.modules if m.startswith('_envdoctor_compat')]:
    del sys.modules[m]
t0 = time.perf_counter()
exec(open(%r).read())
print(time.perf_counter() - t0)
""" % str(site / "_envdoctor_compat.pth"))
    assert p.returncode == 0, p.stderr
    assert float(p.stdout.strip()) < 0.05
