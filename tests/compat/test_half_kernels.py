"""Float16 through the stand-in's RoIAlign, rotated RoIAlign and multi-scale deformable
attention kernels (mmcv's CUDA kernels of these take half): each result is the float32
computation on the (exact) float32 values of the half inputs, rounded once into the caller's
half tensors -- bit for bit -- and within half rounding of float64; accumulating outputs keep
accumulating; the inputs mmcv saves for its backward are not written (version unchanged)."""

import torch

from envdoctor.compat import ext


def _half_case(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 9, 11, generator=g).half()
    rois = torch.tensor([[0, 1.2, 0.7, 6.3, 5.9], [1, 0.0, 2.5, 9.5, 8.0], [1, 3.3, 3.1, 4.1, 4.0]])
    return x, rois.half(), torch.randn(3, 3, 2, 2, generator=g).half()


def _roi_align(x, rois, go, mode, gi0, argmax=None):
    shape = (rois.shape[0], x.shape[1], 2, 2)
    out, ay, ax = x.new_zeros(shape), x.new_zeros(shape), x.new_zeros(shape)
    kw = dict(aligned_height=2, aligned_width=2, spatial_scale=0.9, sampling_ratio=0,
              pool_mode=mode, aligned=True)
    ext.roi_align_forward(x, rois, out, ay, ax, **kw)
    if argmax is not None:
        # max mode's backward reads the argmax the forward stored: float16 in mmcv's buffers
        ay, ax = (t.to(x.dtype) for t in argmax)
    gi = gi0.clone()
    ext.roi_align_backward(go, rois, ay, ax, gi, **kw)
    return out, ay, ax, gi


def test_roi_align_half_is_float32_rounded_once():
    x, rois, go = _half_case(0)
    gi0 = torch.full(x.shape, 0.125).half()  # accumulated into, as mmcv's kernel does
    for mode in (0, 1):
        v0 = x._version
        got = _roi_align(x, rois, go, mode, gi0)
        assert x._version == v0  # the input is read, not written back
        want = _roi_align(x.float(), rois.float(), go.float(), mode, gi0.float(), got[1:3])
        for g, w in zip(got, want):
            assert g.dtype == torch.float16 and torch.equal(g, w.half())
        ref = _roi_align(x.double(), rois.double(), go.double(), mode, gi0.double())
        tol = 2 ** -10 * (1 + ref[0].abs().max().item())  # half rounding
        assert (got[0].double() - ref[0]).abs().max().item() <= tol
        if mode == 1:  # (max mode's backward reads the half-rounded argmax, see above)
            tol = 2 ** -10 * (1 + ref[3].abs().max().item())
            assert (got[3].double() - ref[3]).abs().max().item() <= tol


def test_roi_align_rotated_half():
    x, _, go = _half_case(1)
    rois = torch.tensor([[0, 4.0, 3.5, 5.0, 3.0, 0.4], [1, 6.2, 4.1, 3.3, 6.0, -1.1],
                         [1, 2.0, 2.0, 1.5, 1.0, 0.0]]).half()

    def run(x, rois, go):
        out = x.new_zeros((3, 3, 2, 2))
        kw = dict(pooled_height=2, pooled_width=2, spatial_scale=1.0, sampling_ratio=2,
                  aligned=True, clockwise=False)
        ext.roi_align_rotated_forward(x, rois, out, **kw)
        gi = x.new_zeros(x.shape)
        ext.roi_align_rotated_backward(go, rois, gi, **kw)  # mmcv's positional order
        return out, gi

    got, want = run(x, rois, go), run(x.float(), rois.float(), go.float())
    for g, w in zip(got, want):
        assert g.dtype == torch.float16 and torch.equal(g, w.half())
    assert got[1].abs().sum() > 0


def test_ms_deform_attn_half():
    g = torch.Generator().manual_seed(2)
    shapes = torch.tensor([[6, 8], [3, 4]])
    start = torch.tensor([0, 48])
    value = torch.randn(2, 60, 2, 4, generator=g).half()
    loc = (torch.rand(2, 5, 2, 2, 3, 2, generator=g) * 1.2 - 0.1).half()
    attn = torch.rand(2, 5, 2, 2, 3, generator=g).half()
    go = torch.randn(2, 5, 8, generator=g).half()

    def run(v, lc, a, grad):
        out = ext.ms_deform_attn_forward(v, shapes, start, lc, a, im2col_step=2)
        gv, gl, ga = torch.zeros_like(v), torch.ones_like(lc), torch.zeros_like(a)
        ext.ms_deform_attn_backward(v, shapes, start, lc, a, grad, gv, gl, ga, im2col_step=2)
        return out, gv, gl, ga

    got, want = run(value, loc, attn, go), run(value.float(), loc.float(), attn.float(), go.float())
    for g_, w in zip(got, want):
        assert g_.dtype == torch.float16 and torch.equal(g_, w.half())
