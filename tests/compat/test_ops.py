"""Exactness of envdoctor.compat.ops against the loop reference and torchvision's kernel."""

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import dcn_torch, ops
from reference import reference

TV_OK = ops.torchvision_available()[0]
BACKENDS = ["torch"] + (["torchvision"] if TV_OK else [])
needs_tv = pytest.mark.skipif(not TV_OK, reason="torchvision's compiled deform_conv2d not loadable")

# (B, C, H, W, Cout, kh, kw, stride, padding, dilation, groups, deform_groups)
CONFIGS = {
    "basic-pad1-g2-dg2": (2, 4, 5, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2, 2),
    "H1-stride21-dil12-dg3": (1, 6, 1, 7, 3, 3, 2, (2, 1), (1, 2), (1, 2), 1, 3),
    "W1-1x3-pad": (2, 2, 4, 1, 3, 1, 3, (1, 1), (0, 1), (1, 1), 1, 1),
    "2x3-stride12-pad21": (2, 4, 4, 4, 4, 2, 3, (1, 2), (2, 1), (2, 1), 1, 1),
    "groups4-dg2-pad2": (1, 8, 5, 5, 4, 3, 3, (2, 2), (2, 2), (1, 1), 4, 2),
}
KINDS = ["zero", "integer", "half", "huge", "dyadic", "dyadic-large"]


def make_offsets(kind, shape, gen):
    if kind == "zero":
        off = torch.zeros(shape, dtype=torch.float64)
    elif kind == "integer":
        off = torch.randint(-3, 4, shape, generator=gen).double()
    elif kind == "half":
        off = torch.randint(-6, 7, shape, generator=gen).double() / 2
    elif kind == "huge":
        off = torch.randn(shape, generator=gen, dtype=torch.float64) * 50
    elif kind == "dyadic":
        off = torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5
    elif kind == "dyadic-large":
        off = torch.randn(shape, generator=gen, dtype=torch.float64) * 4
    else:
        raise ValueError(kind)
    # multiples of 2^-10: mmcv's floorf-on-double quirk never triggers (research notes §2.4)
    return torch.round(off * 1024) / 1024


def make_case(cfg, kind, modulated, seed=0, dtype=torch.float64):
    B, C, H, W, Cout, kh, kw, s, p, d, G, dg = cfg
    gen = torch.Generator().manual_seed(seed)
    Ho = (H + 2 * p[0] - (d[0] * (kh - 1) + 1)) // s[0] + 1
    Wo = (W + 2 * p[1] - (d[1] * (kw - 1) + 1)) // s[1] + 1
    K = kh * kw
    t = {
        "x": torch.randn(B, C, H, W, generator=gen, dtype=torch.float64),
        "offset": make_offsets(kind, (B, dg * 2 * K, Ho, Wo), gen),
        "weight": torch.randn(Cout, C // G, kh, kw, generator=gen, dtype=torch.float64),
        "mask": torch.rand(B, dg * K, Ho, Wo, generator=gen, dtype=torch.float64) if modulated else None,
        "bias": torch.randn(Cout, generator=gen, dtype=torch.float64) if modulated else None,
        "grad_out": torch.randn(B, Cout, Ho, Wo, generator=gen, dtype=torch.float64),
    }
    t = {k: (v.to(dtype) if v is not None else None) for k, v in t.items()}
    return t, dict(stride=s, padding=p, dilation=d, groups=G, deform_groups=dg)


def run_ops(t, kw, backend, modulated):
    leaves = {k: (v.clone().requires_grad_(True) if v is not None else None)
              for k, v in t.items() if k != "grad_out"}
    if modulated:
        out = ops.modulated_deform_conv2d(
            leaves["x"], leaves["offset"], leaves["mask"], leaves["weight"], leaves["bias"],
            kw["stride"], kw["padding"], kw["dilation"], kw["groups"], kw["deform_groups"],
            backend=backend)
    else:
        out = ops.deform_conv2d(leaves["x"], leaves["offset"], leaves["weight"], kw["stride"],
                                kw["padding"], kw["dilation"], kw["groups"], kw["deform_groups"],
                                backend=backend)
    out.backward(t["grad_out"])
    res = {"out": out.detach(), "input": leaves["x"].grad, "offset": leaves["offset"].grad,
           "weight": leaves["weight"].grad}
    if modulated:
        res["mask"] = leaves["mask"].grad
        res["bias"] = leaves["bias"].grad
    return res


def run_reference(t, kw, modulated):
    ref = reference(t["x"].tolist(), t["offset"].tolist(), t["weight"].tolist(),
                    t["mask"].tolist() if modulated else None,
                    t["bias"].tolist() if modulated else None,
                    kw["stride"], kw["padding"], kw["dilation"], kw["groups"],
                    kw["deform_groups"], t["grad_out"].tolist())
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in ref.items()}


_REF_CACHE = {}


def cached_reference(cfg_name, kind, modulated):
    key = (cfg_name, kind, modulated)
    if key not in _REF_CACHE:
        t, kw = make_case(CONFIGS[cfg_name], kind, modulated)
        _REF_CACHE[key] = (t, kw, run_reference(t, kw, modulated))
    return _REF_CACHE[key]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("modulated", [True, False], ids=["v2", "v1"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_float64_matches_reference(cfg_name, kind, modulated, backend):
    t, kw, ref = cached_reference(cfg_name, kind, modulated)
    got = run_ops(t, kw, backend, modulated)
    assert set(got) == set(ref)
    for name in ref:
        err = (got[name] - ref[name]).abs().max().item()
        assert err <= 1e-10, "%s differs by %.3g" % (name, err)


def test_reference_sees_the_minus_one_cut():
    """The test data really puts samples on exactly -1 (where torchvision's raw kernel differs)."""
    t, kw, ref = cached_reference("basic-pad1-g2-dg2", "zero", True)
    # with zero offsets and padding 1, the first row/column of taps sits at -1: mmcv's rule gives
    # a zero offset gradient there even though the neighbouring pixel row is inside the image
    g = ref["offset"].view(2, 2, 9, 2, 5, 6)
    assert torch.all(g[:, :, 0:3, 0, 0, :] == 0)  # taps i=0 at output row 0: y = -1
    assert g.abs().sum() > 0


@needs_tv
def test_raw_torchvision_differs_at_minus_one_and_gate_fixes_it():
    import torchvision

    t, kw, ref = cached_reference("basic-pad1-g2-dg2", "zero", True)
    off = t["offset"].clone().requires_grad_(True)
    out = torchvision.ops.deform_conv2d(t["x"], off, t["weight"], t["bias"], kw["stride"],
                                        kw["padding"], kw["dilation"], t["mask"])
    out.backward(t["grad_out"])
    assert (off.grad - ref["offset"]).abs().max() > 1e-3  # pytorch/vision#6885
    got = run_ops(t, kw, "torchvision", True)
    assert (got["offset"] - ref["offset"]).abs().max() <= 1e-10


@pytest.mark.parametrize("cfg_name", ["basic-pad1-g2-dg2", "groups4-dg2-pad2"])
def test_float32_matches_reference_within_rounding(cfg_name):
    t, kw, ref = cached_reference(cfg_name, "dyadic", True)
    t32 = {k: (v.float() if v is not None else None) for k, v in t.items()}
    for backend in BACKENDS:
        got = run_ops(t32, kw, backend, True)
        for name in ref:
            scale = ref[name].abs().max().item() + 1
            err = (got[name].double() - ref[name]).abs().max().item()
            assert err <= 2e-5 * scale, (backend, name, err)


@needs_tv
def test_float32_torch_vs_torchvision_e2fgvi_like():
    gen = torch.Generator().manual_seed(1)
    B, C, H, W, dg = 1, 32, 12, 20, 4
    x = torch.randn(B, C, H, W, generator=gen)
    off = 3 * torch.tanh(torch.randn(B, dg * 18, H, W, generator=gen)) + \
        torch.randn(B, 2, H, W, generator=gen).flip(1).repeat(1, dg * 9, 1, 1)
    m = torch.sigmoid(torch.randn(B, dg * 9, H, W, generator=gen))
    w = torch.randn(16, C, 3, 3, generator=gen) * 0.1
    b = torch.randn(16, generator=gen)
    g = torch.randn(B, 16, H, W, generator=gen)
    t = {"x": x, "offset": off, "mask": m, "weight": w, "bias": b, "grad_out": g}
    kw = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, deform_groups=dg)
    a = run_ops(t, kw, "torch", True)
    c = run_ops(t, kw, "torchvision", True)
    for name in a:
        scale = a[name].abs().max().item() + 1e-3
        assert (a[name] - c[name]).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_dtypes(dtype):
    t, kw, _ = cached_reference("basic-pad1-g2-dg2", "dyadic", True)
    # sample coordinates that are exact in the dtype (multiples of 1/4 below 16), so that
    # floor() picks the same cell as in float64 -- like mmcv, the coordinates are computed in
    # the tensor's own dtype; then the reference on exactly the low-precision inputs
    t = dict(t, offset=torch.round(t["offset"] * 4) / 4)
    tl = {k: (v.to(dtype) if v is not None else None) for k, v in t.items()}
    t64 = {k: (v.double() if v is not None else None) for k, v in tl.items()}
    ref = run_reference(t64, kw, True)
    got = run_ops(tl, kw, "torch", True)
    for name in ref:
        assert got[name].dtype == dtype
        scale = ref[name].abs().max().item() + 1
        err = (got[name].double() - ref[name]).abs().max().item()
        tol = 2e-2 if dtype == torch.float16 else 8e-2
        assert err <= tol * scale, (name, err, scale)


def _smooth_case(modulated, G=1, dg=2):
    gen = torch.Generator().manual_seed(3)
    B, C, H, W, Cout = 2, 4, 4, 5, 2
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    # offsets whose sample points stay away from integer coordinates and the borders' kinks
    frac = 0.2 + 0.6 * torch.rand(B, dg * 18, H, W, generator=gen, dtype=torch.float64)
    off = torch.randint(-1, 2, (B, dg * 18, H, W), generator=gen).double() + frac
    w = torch.randn(Cout, C // G, 3, 3, generator=gen, dtype=torch.float64)
    m = torch.rand(B, dg * 9, H, W, generator=gen, dtype=torch.float64) if modulated else None
    b = torch.randn(Cout, generator=gen, dtype=torch.float64) if modulated else None
    return x, off, m, w, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("modulated", [True, False], ids=["v2", "v1"])
def test_gradcheck(backend, modulated):
    x, off, m, w, b = _smooth_case(modulated, G=2)
    if modulated:
        inputs = tuple(t.requires_grad_() for t in (x, off, m, w, b))

        def fn(x, off, m, w, b):
            return ops.modulated_deform_conv2d(x, off, m, w, b, 1, 1, 1, 2, 2, backend=backend)
    else:
        inputs = tuple(t.requires_grad_() for t in (x, off, w))

        def fn(x, off, w):
            return ops.deform_conv2d(x, off, w, 1, 1, 1, 2, 2, backend=backend)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_offsets_matter_seed_conv_plus_mask_is_not_dcn():
    """A 'Conv2d + mask scaling' stand-in (the seed's workaround) must fail this test."""
    gen = torch.Generator().manual_seed(5)
    B, C, H, W, Cout = 1, 3, 8, 9, 4
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    w = torch.randn(Cout, C, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(Cout, generator=gen, dtype=torch.float64)
    m = torch.rand(B, 9, H, W, generator=gen, dtype=torch.float64)

    def seed_like(x, offset, mask, w, b):
        # what the seed did: an ordinary convolution with the mask applied per tap; offsets ignored
        cols = F.unfold(x, 3, padding=1).view(B, C, 9, H * W) * mask.view(B, 1, 9, H * W)
        return (w.view(Cout, -1) @ cols.view(B, C * 9, H * W)).view(B, Cout, H, W) + b.view(1, -1, 1, 1)

    zero = torch.zeros(B, 18, H, W, dtype=torch.float64)
    for backend in BACKENDS:
        # with zero offsets they agree (so the comparison below is fair) ...
        dcn0 = ops.modulated_deform_conv2d(x, zero, m, w, b, 1, 1, 1, 1, 1, backend=backend)
        assert torch.allclose(dcn0, seed_like(x, zero, m, w, b), atol=1e-12)
        # ... with real offsets they must not
        off = torch.round(torch.randn(B, 18, H, W, generator=gen, dtype=torch.float64) * 2048) / 1024
        dcn = ops.modulated_deform_conv2d(x, off, m, w, b, 1, 1, 1, 1, 1, backend=backend)
        assert (dcn - seed_like(x, off, m, w, b)).abs().max() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_offset_layout_is_dy_then_dx(backend):
    """Offset +1 on the y channels (even channels) samples one row lower: with padding 1 the tap
    (i, j) at output (oh, ow) then reads x[oh + i, ow + j - 1], i.e. an ordinary convolution of
    the image padded by 2 rows at the bottom only."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 2, 6, 7, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    for axis in (0, 1):
        off = torch.zeros(1, 18, 6, 7, dtype=torch.float64)
        off[:, axis::2] = 1.0
        got = ops.deform_conv2d(x, off, w, 1, 1, 1, 1, 1, backend=backend)
        if axis == 0:
            want = F.conv2d(F.pad(x, (0, 0, 0, 2)), w, padding=(0, 1))
        else:
            want = F.conv2d(F.pad(x, (0, 2, 0, 0)), w, padding=(1, 0))
        assert torch.allclose(got, want, atol=1e-12), axis


def test_chunking_does_not_change_results(monkeypatch):
    t, kw, ref = cached_reference("basic-pad1-g2-dg2", "dyadic", True)
    monkeypatch.setattr(dcn_torch, "_CHUNK_BYTES", 1)  # one output position per chunk
    got = run_ops(t, kw, "torch", True)
    for name in ref:
        assert (got[name] - ref[name]).abs().max().item() <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_and_noncontiguous(backend):
    t, kw, ref = cached_reference("basic-pad1-g2-dg2", "dyadic", True)
    x = t["x"][:0]
    out = ops.modulated_deform_conv2d(x, t["offset"][:0], t["mask"][:0], t["weight"], t["bias"],
                                      1, 1, 1, 2, 2, backend=backend)
    assert out.shape == (0, 6, 5, 6)
    # non-contiguous views give the same numbers
    xt = t["x"].transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous()
    o1 = ops.modulated_deform_conv2d(xt, t["offset"], t["mask"], t["weight"], t["bias"], 1, 1, 1,
                                     2, 2, backend=backend)
    assert (o1 - ref["out"]).abs().max() <= 1e-10


def test_errors_name_the_case(monkeypatch):
    t, kw, _ = cached_reference("basic-pad1-g2-dg2", "dyadic", True)
    with pytest.raises(ValueError, match="offset must have shape"):
        ops.modulated_deform_conv2d(t["x"], t["offset"][:, :-2], t["mask"], t["weight"],
                                    t["bias"], 1, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="mask must have shape"):
        ops.modulated_deform_conv2d(t["x"], t["offset"], t["mask"][:, :-1], t["weight"],
                                    t["bias"], 1, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="Expected 4D tensor as input"):
        ops.deform_conv2d(t["x"][0], t["offset"], t["weight"])
    with pytest.raises(ValueError, match="too small"):
        ops.deform_conv2d(t["x"][:, :, :1, :1], t["offset"], t["weight"][:, :2], groups=2)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.deform_conv2d(t["x"], t["offset"], t["weight"], 1, 1, 1, 2, 2, backend="cuda")
    with pytest.raises(ops.CompatUnsupportedError, match="dtype torch.int64"):
        xi = t["x"].long()
        ops.deform_conv2d(xi, t["offset"].long(), t["weight"].long(), 1, 1, 1, 2, 2)
    with pytest.raises(ops.CompatUnsupportedError, match="bias"):
        ops.deform_conv2d(t["x"], t["offset"], t["weight"], 1, 1, 1, 2, 2, bias=True)
    # an explicitly requested backend that cannot run raises; it is never swapped silently
    monkeypatch.setitem(ops._TV_STATE, "ok", False)
    monkeypatch.setitem(ops._TV_STATE, "reason", "ImportError: simulated")
    with pytest.raises(ops.CompatUnsupportedError, match="backend 'torchvision'.*simulated"):
        ops.deform_conv2d(t["x"], t["offset"], t["weight"], 1, 1, 1, 2, 2, backend="torchvision")
    assert ops.select_backend(t["x"], "auto") == "torch"


@needs_tv
def test_torchvision_backend_rejects_unsupported_dtype_by_name():
    x = torch.randn(1, 2, 4, 4).to(torch.bfloat16)
    if ops._tv_supports(x.device, x.dtype):
        pytest.skip("this torchvision build supports bfloat16 on CPU")
    with pytest.raises(ops.CompatUnsupportedError, match="bfloat16"):
        ops.deform_conv2d(x, torch.zeros(1, 18, 2, 2, dtype=torch.bfloat16),
                          torch.randn(1, 2, 3, 3).to(torch.bfloat16), backend="torchvision")


def test_auto_backend_selection(monkeypatch):
    x = torch.zeros(1, 1, 2, 2)
    monkeypatch.delenv("ENVDOCTOR_COMPAT_BACKEND", raising=False)
    ops.reset_backend_choice()
    # CPU: the pure-PyTorch backend is the faster exact one (bench/bench_compat.py)
    assert ops.select_backend(x, "auto", needs_grad=True) == "torch"
    assert ops.select_backend(x, "auto", needs_grad=False) == "torch"
    assert ops.select_backend(x, "torchvision") == "torchvision"
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torchvision")
    # the override is read once per process (no environment lookup per call) ...
    assert ops.select_backend(x, "auto") == "torch"
    ops.reset_backend_choice()  # ... and again after a reset
    assert ops.select_backend(x, "auto") == "torchvision"
    assert ops.select_backend(x.double(), "auto") == "torchvision"
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", "torch")
    ops.reset_backend_choice()
    assert ops.select_backend(x, "auto") == "torch"
    monkeypatch.delenv("ENVDOCTOR_COMPAT_BACKEND")
    ops.reset_backend_choice()
    if torch.cuda.is_available() and TV_OK:
        assert ops.select_backend(x.cuda(), "auto") == "torchvision"
        monkeypatch.setitem(ops._TV_STATE, "ok", False)  # a changed probe is a new key
        assert ops.select_backend(x.cuda(), "auto") == "torch"


def test_call_shapes_are_validated_once_and_stay_validated():
    x, off, w = torch.zeros(1, 2, 5, 5), torch.zeros(1, 18, 5, 5), torch.zeros(3, 2, 3, 3)
    ops.deform_conv2d(x, off, w, padding=1)
    n = len(ops._CHECKED)
    ops.deform_conv2d(x, off, w, padding=1)
    assert len(ops._CHECKED) == n  # the same call shape: one lookup
    # a different shape is checked again, so a wrong one still raises every time
    for _ in range(2):
        with pytest.raises(ValueError, match="offset must have shape"):
            ops.deform_conv2d(x, off[:, :16], w, padding=1)
    with pytest.raises(ValueError, match="offset must have shape"):
        ops.deform_conv2d(x, off, w, padding=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_matches_reference(backend):
    t, kw, ref = cached_reference("basic-pad1-g2-dg2", "half", True)
    tc = {k: (v.cuda() if v is not None else None) for k, v in t.items()}
    got = run_ops(tc, kw, backend, True)
    for name in ref:
        assert (got[name].cpu() - ref[name]).abs().max().item() <= 1e-10
