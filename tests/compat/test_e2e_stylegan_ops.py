"""mmcv's own StyleGAN-family op code (upfirdn2d, bias_act, filtered_lrelu) on the stand-in.

mmcv calls these kernels from its CUDA-only autograd Functions (on the CPU it runs reference
functions instead); the Functions themselves do not look at the device, so here mmcv's own
``_upfirdn2d_cuda`` / ``_bias_act_cuda`` / ``_filtered_lrelu_cuda`` (2.2.0) and ``UpFirDn2d``
(1.7.2) run on CPU tensors in the real venvs and are compared with mmcv's own reference
functions: outputs, gradients, and gradcheck through mmcv's backward (which calls the kernels
again).  The stand-in is installed with the same line the .pth file runs, from a private copy
(``hook.enable`` into a temporary directory), so the shared cached venvs are not modified.
Faked: ``torch.cuda.current_stream``/``default_stream`` for mmcv's float32 filtered_lrelu path,
which asks for the CUDA stream only to warn about concurrency.
"""

import json
import os
import subprocess
import textwrap

import pytest

from envdoctor.compat import hook

PRELUDE = textwrap.dedent(r'''
    import _envdoctor_compat.hook as _h; _h.install()
    import json, sys, warnings
    import torch
    torch.manual_seed(0)
    import mmcv.ops  # noqa: F401 -- imports every op module, each asserting its _ext names
    import mmcv._ext as ext
    res = {"ext_is_compat": getattr(ext, "__envdoctor_compat__", False)}

    def md(a, b):
        return max((x - y).abs().max().item() for x, y in zip(a, b))

    def run(fn, *inputs):
        xs = [t.detach().clone().requires_grad_(True) for t in inputs]
        out = fn(*xs)
        g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        grads = torch.autograd.grad(out, xs, g)
        return [out.detach()] + list(grads)
''')

SCRIPT_V2 = PRELUDE + textwrap.dedent(r'''
    um = sys.modules["mmcv.ops.upfirdn2d"]
    ba = sys.modules["mmcv.ops.bias_act"]
    fl = sys.modules["mmcv.ops.filtered_lrelu"]

    # upfirdn2d: StyleGAN2's up (4x4 [1,3,3,1]), down, a separable filter, flip, gain
    k1 = torch.tensor([1., 3., 3., 1.])
    k = k1[:, None] * k1[None, :]
    k = k / k.sum()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    worst, worst_grad = 0.0, 0.0
    for f, kw in ((k, dict(up=2, padding=[2, 1, 2, 1], gain=4)),
                  (k, dict(down=2, padding=1)),
                  (k1 / 8, dict(up=2, padding=[2, 1, 2, 1], gain=4)),
                  (torch.randn(3, 2), dict(up=[1, 2], down=[2, 1], padding=[1, 0, 2, 1],
                                           flip_filter=True, gain=0.5))):
        cls = um._upfirdn2d_cuda(**kw)
        a = run(lambda t: cls.apply(t, f), x)
        b = run(lambda t: um._upfirdn2d_ref(t, f, **kw), x)
        worst = max(worst, md(a[:1], b[:1]))
        worst_grad = max(worst_grad, md(a[1:], b[1:]))
    res["upfirdn2d"] = [worst, worst_grad]
    cls = um._upfirdn2d_cuda(up=2, padding=[2, 1, 2, 1], gain=4)
    res["upfirdn2d_gradcheck"] = torch.autograd.gradcheck(
        lambda t: cls.apply(t, k), (x[:1, :1].clone().requires_grad_(),), eps=1e-6, atol=1e-9)
    res["upfirdn2d_gradgradcheck"] = torch.autograd.gradgradcheck(
        lambda t: cls.apply(t, k), (x[:1, :1, :3, :3].clone().requires_grad_(),), eps=1e-6,
        atol=1e-9, fast_mode=True)

    # bias_act: every activation, mmcv's CUDA Function vs mmcv's reference function
    xb = torch.randn(2, 4, 3, dtype=torch.float64) * 2
    bb = torch.randn(4, dtype=torch.float64)
    worst = {}
    for act in sorted(ba.activation_funcs):
        for clamp in (None, 0.9):
            cls = ba._bias_act_cuda(dim=1, act=act, clamp=clamp)
            a = run(lambda t, u: cls.apply(t, u), xb, bb)
            b = run(lambda t, u: ba._bias_act_ref(t, u, dim=1, act=act, clamp=clamp), xb, bb)
            if act == "linear" and clamp is not None:
                # mmcv's CUDA Function saves no yref for 'linear', so its kernel's clamp test
                # sees 0 and passes every gradient through (the reference zeroes the clamped)
                res["bias_act_linear_clamp"] = [md(a[:1], b[:1]), md(a[1:], [
                    torch.linspace(-1, 1, xb.numel(), dtype=xb.dtype).view_as(xb),
                    torch.linspace(-1, 1, xb.numel(), dtype=xb.dtype).view_as(xb).sum([0, 2])])]
                continue
            worst[act] = max(worst.get(act, 0.0), md(a, b))
    res["bias_act"] = worst
    cls = ba._bias_act_cuda(dim=1, act="tanh")
    res["bias_act_gradgradcheck"] = torch.autograd.gradgradcheck(
        lambda t, u: cls.apply(t, u), (xb[:1].clone().requires_grad_(),
                                       bb.clone().requires_grad_()), eps=1e-6, atol=1e-8)

    # filtered_lrelu, float64: mmcv's generic path (filtered_lrelu_act_ between two upfirdn2d)
    xf = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    bf = torch.randn(3, dtype=torch.float64)
    fu, fd = torch.randn(4, 4), torch.randn(2, 2)
    kw = dict(up=2, down=2, padding=2, gain=1.5, slope=0.25, clamp=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = fl._filtered_lrelu_cuda(**kw)
        a = run(lambda t, u: cls.apply(t, fu, fd, u, None, 0, 0), xf, bf)
        b = run(lambda t, u: fl._filtered_lrelu_ref(t, fu, fd, u, **kw), xf, bf)
        res["filtered_lrelu_f64"] = md(a, b)
        res["filtered_lrelu_gradcheck"] = torch.autograd.gradcheck(
            lambda t, u: cls.apply(t, fu, fd, u, None, 0, 0),
            (xf[:, :1, :5, :5].clone().requires_grad_(), bf[:1].clone().requires_grad_()),
            eps=1e-6, atol=1e-8)
    # float32: mmcv's fused path (ext.filtered_lrelu with signs), vs the float64 reference
    torch.cuda.current_stream = lambda device=None: "s"
    torch.cuda.default_stream = lambda device=None: "s"
    worst = 0.0
    for kw, fu_, fd_ in ((dict(up=2, down=2, padding=2, gain=1.5, slope=0.25, clamp=1.0), fu, fd),
                         (dict(up=2, down=2, padding=[5, 4, 5, 4], clamp=256.0),
                          torch.randn(12), torch.randn(12)),
                         (dict(up=1, down=2, padding=1, flip_filter=True), fd, fu)):
        cls = fl._filtered_lrelu_cuda(**kw)
        a = run(lambda t, u: cls.apply(t, fu_, fd_, u, None, 0, 0), xf.float(), bf.float())
        b = run(lambda t, u: fl._filtered_lrelu_ref(t, fu_, fd_, u, **kw), xf, bf)
        scale = max(t.abs().max().item() for t in b)
        worst = max(worst, md([t.double() for t in a], b) / scale)
    res["filtered_lrelu_f32_rel"] = worst
    print("RESULT " + json.dumps(res))
''')

SCRIPT_V1 = PRELUDE + textwrap.dedent(r'''
    um = sys.modules["mmcv.ops.upfirdn2d"]
    k1 = torch.tensor([1., 3., 3., 1.], dtype=torch.float64)
    k = k1[:, None] * k1[None, :]
    k = k / k.sum()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    worst = 0.0
    for kk, up, down, pad in ((k, (2, 2), (1, 1), (2, 1, 2, 1)), (k, (1, 1), (2, 2), (1, 1, 1, 1)),
                              (torch.randn(3, 2, dtype=torch.float64), (1, 2), (2, 1),
                               (1, 0, 2, 1))):
        a = run(lambda t: um.UpFirDn2d.apply(t, kk, up, down, pad), x)
        b = run(lambda t: um.upfirdn2d_native(t, kk, up[0], up[1], down[0], down[1], *pad), x)
        worst = max(worst, md(a, b))
    res["upfirdn2d"] = worst
    f = lambda t: um.UpFirDn2d.apply(t, k, (2, 2), (1, 1), (2, 1, 2, 1))
    res["upfirdn2d_gradcheck"] = torch.autograd.gradcheck(
        f, (x[:1, :1].clone().requires_grad_(),), eps=1e-6, atol=1e-9)
    res["upfirdn2d_gradgradcheck"] = torch.autograd.gradgradcheck(
        f, (x[:1, :1, :3, :3].clone().requires_grad_(),), eps=1e-6, atol=1e-9, fast_mode=True)
    print("RESULT " + json.dumps(res))
''')


def _run(venv, code, pythonpath):
    env = dict(os.environ)
    env.pop("ENVDOCTOR_COMPAT", None)
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=900)


def _result(p):
    assert p.returncode == 0, p.stderr[-4000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture
def private_copy(tmp_path):
    hook.enable(tmp_path)  # the package copy the .pth would import, here only on PYTHONPATH
    return tmp_path


def test_mmcv2_stylegan_ops_on_the_standin(mmcv2_env, private_copy):
    res = _result(_run(mmcv2_env, SCRIPT_V2, private_copy))
    print(res)  # the measured differences, for docs/compat.md (pytest -s)
    assert res["ext_is_compat"] is True
    assert res["upfirdn2d"][0] <= 1e-12 and res["upfirdn2d"][1] <= 1e-12, res["upfirdn2d"]
    assert res["upfirdn2d_gradcheck"] and res["upfirdn2d_gradgradcheck"]
    # mmcv's CUDA Function passes alpha/gain/clamp as C floats (sqrt(2) rounded: ~3e-8)
    for act, diff in res["bias_act"].items():
        assert diff <= 1e-6, (act, diff)
    assert res["bias_act"]["linear"] <= 1e-15 and res["bias_act"]["relu"] <= 1e-6
    assert res["bias_act_linear_clamp"][0] <= 1e-7 and res["bias_act_linear_clamp"][1] == 0
    assert res["bias_act_gradgradcheck"]
    assert res["filtered_lrelu_f64"] <= 1e-12
    assert res["filtered_lrelu_gradcheck"]
    assert res["filtered_lrelu_f32_rel"] <= 1e-5


def test_mmcv1_upfirdn2d_on_the_standin(mmcv1_env, private_copy):
    res = _result(_run(mmcv1_env, SCRIPT_V1, private_copy))
    print(res)
    assert res["ext_is_compat"] is True
    assert res["upfirdn2d"] <= 1e-12
    assert res["upfirdn2d_gradcheck"] and res["upfirdn2d_gradgradcheck"]
