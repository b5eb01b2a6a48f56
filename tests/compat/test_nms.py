"""nms, softnms, nms_match of the mmcv._ext stand-in: mmcv's pinned values, a loop reference,
the CPU/CUDA rules, torchvision's fast path, and mmcv's keyword signatures."""

import pytest
import torch

from envdoctor.compat import ext
from envdoctor.compat import nms as N
from ref_nms import nms_match_ref, nms_ref, softnms_ref

TV = N._tv_nms() is not None

# mmcv tests/test_ops/test_nms.py (values are facts of mmcv's kernels)
BOXES = [[6.0, 3.0, 8.0, 7.0], [3.0, 6.0, 9.0, 11.0], [3.0, 7.0, 10.0, 12.0], [1.0, 4.0, 13.0, 7.0]]
SCORES = [0.6, 0.9, 0.7, 0.2]
SOFT = {  # method: (dets scores, inds) at iou 0.3, sigma 0.5, min_score 0.01
    1: ([0.9, 0.6, 0.29024392, 0.2], [1, 0, 2, 3]),
    2: ([0.9, 0.59630775, 0.35275510, 0.18650459], [1, 0, 2, 3]),
    0: ([0.9, 0.6, 0.2], [1, 0, 3]),
}
MATCH_DETS = [[49.1, 32.4, 51.0, 35.9, 0.9], [49.3, 32.9, 51.0, 35.3, 0.9],
              [35.3, 11.5, 39.9, 14.5, 0.4], [35.2, 11.7, 39.7, 15.7, 0.3]]


@pytest.fixture(params=["torch"] + (["torchvision"] if TV else []))
def backend(request, monkeypatch):
    monkeypatch.setenv("ENVDOCTOR_COMPAT_BACKEND", request.param)
    return request.param


def test_mmcv_pinned_values(backend):
    b, s = torch.tensor(BOXES), torch.tensor(SCORES)
    assert ext.nms(b, s, iou_threshold=0.3, offset=0).tolist() == [1, 0, 3]
    for method, (dscores, inds) in SOFT.items():
        dets = b.new_empty((4, 5))
        got = ext.softnms(b, s, dets, iou_threshold=0.3, sigma=0.5, min_score=0.01,
                          method=method, offset=0)
        assert got.tolist() == inds
        want = torch.cat([b[inds], torch.tensor(dscores)[:, None]], 1)
        assert torch.allclose(dets[:len(inds)], want, rtol=0, atol=1e-7), (method, dets)
    groups = ext.nms_match(torch.tensor(MATCH_DETS), iou_threshold=0.6)
    assert len(groups) == 2 and {g[0] for g in groups} == {0, 2}
    assert all(isinstance(v, int) for g in groups for v in g)
    assert ext.nms(b[:0], s[:0], iou_threshold=0.5, offset=0).tolist() == []


def _random_case(seed, n=300):
    """Integer-grid boxes with many exact IoU ties at simple thresholds and tied scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 40, (n, 2), generator=g).float()
    wh = torch.randint(1, 12, (n, 2), generator=g).float()
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.randint(0, 20, (n,), generator=g).float() / 20
    return boxes, scores


@pytest.mark.parametrize("thr", [0.5, 0.6, 1 / 3, 0.7])
@pytest.mark.parametrize("offset", [0, 1])
def test_nms_equals_the_loop_reference(backend, thr, offset):
    for seed in range(3):
        boxes, scores = _random_case(seed)
        order = scores.sort(0, descending=True)[1].tolist()
        want = nms_ref(boxes.tolist(), order, thr, offset, "cpu")
        got = ext.nms(boxes, scores, iou_threshold=thr, offset=offset)
        assert got.dtype == torch.int64 and got.tolist() == want, (seed, thr, offset)


def test_threshold_is_compared_in_float32_like_mmcv(backend):
    # inter 3, union 5: the float32 IoU is float32(0.6) > 0.6; mmcv compares float32 to
    # float32(0.6): not suppressed.  torchvision's nms compares with the double 0.6.
    boxes = torch.tensor([[0.0, 0.0, 5.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert ext.nms(boxes, scores, iou_threshold=0.6, offset=0).tolist() == [0, 1]
    if TV:
        import torchvision

        assert torchvision.ops.nms(boxes, scores, 0.6).tolist() == [0]  # why we gate it


def test_cuda_rule_is_the_multiplied_form():
    """On CUDA tensors mmcv suppresses on inter > thr*union, on CPU on inter/union > thr."""
    # a box nested in another, IoU within float rounding of 0.7 (found by search over the rules)
    boxes = torch.tensor([[0.0, 0.0, 54.47494888305664, 1.0], [0.0, 0.0, 38.13246536254883, 1.0]])
    order = torch.tensor([0, 1])
    thr = N._f32(0.7)
    assert nms_ref(boxes.tolist(), [0, 1], 0.7, 0, "cpu") == [0]
    assert nms_ref(boxes.tolist(), [0, 1], 0.7, 0, "cuda") == [0, 1]
    assert N.nms_keep_sorted(boxes, thr, 0, "cpu").tolist() == [0]
    assert N.nms_keep_sorted(boxes, thr, 0, "cuda").tolist() == [0, 1]
    assert ext.nms(boxes, torch.tensor([0.9, 0.8]), iou_threshold=0.7, offset=0).tolist() == [0]
    for seed in range(5):
        boxes, scores = _random_case(seed, n=200)
        order = scores.sort(0, descending=True)[1]
        for offset in (0, 1):
            want = nms_ref(boxes.tolist(), order.tolist(), 0.3, offset, "cuda")
            got = order[N.nms_keep_sorted(boxes[order], N._f32(0.3), offset, "cuda")].tolist()
            assert got == want


def test_nms_reads_float32_and_keeps_the_device():
    boxes, scores = _random_case(5)
    a = ext.nms(boxes.double(), scores.double(), iou_threshold=0.5, offset=0)
    b = ext.nms(boxes, scores.double(), iou_threshold=0.5, offset=0)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("method", [0, 1, 2])
@pytest.mark.parametrize("min_score", [0.001, 0.3])
def test_softnms_equals_the_loop_reference(method, min_score):
    for seed in range(2):
        boxes, scores = _random_case(seed, n=120)
        dets_want, inds_want = softnms_ref(boxes.tolist(), scores.tolist(), 0.3, 0.5, min_score,
                                           method, 0)
        dets = boxes.new_full((120, 5), -7.0)
        inds = ext.softnms(boxes, scores, dets, iou_threshold=0.3, sigma=0.5,
                           min_score=min_score, method=method, offset=0)
        assert inds.tolist() == inds_want, (seed, method, min_score)
        assert dets[:len(inds)].tolist() == dets_want
        assert (dets[len(inds):] == -7.0).all()  # rows past the kept ones are not written
    assert len(inds_want) < 120 or min_score < 0.01  # min_score 0.3 really drops boxes


def test_nms_match_equals_the_loop_reference():
    for seed in range(3):
        boxes, scores = _random_case(seed, n=150)
        dets = torch.cat([boxes, scores[:, None]], 1)
        order = dets[:, 4].sort(0, descending=True)[1].tolist()
        for thr in (0.3, 0.5):
            assert ext.nms_match(dets, iou_threshold=thr) == nms_match_ref(dets.tolist(), order, thr)
    assert ext.nms_match(torch.zeros((0, 5)), iou_threshold=0.5) == []


def test_cpu_only_kernels_refuse_other_devices_like_mmcv():
    meta = torch.zeros((2, 4), device="meta")
    with pytest.raises(RuntimeError, match="softnms_impl: implementation for device meta"):
        ext.softnms(meta, meta[:, 0], meta, iou_threshold=0.3, sigma=0.5, min_score=0.0,
                    method=1, offset=0)
    with pytest.raises(RuntimeError, match="nms_match_impl: implementation for device meta"):
        ext.nms_match(torch.zeros((2, 5), device="meta"), iou_threshold=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_nms_uses_the_cuda_rule():  # pragma: no cover - no GPU here
    boxes, scores = _random_case(1)
    order = scores.sort(0, descending=True)[1]
    want = nms_ref(boxes.tolist(), order.tolist(), 0.3, 0, "cuda")
    got = ext.nms(boxes.cuda(), scores.cuda(), iou_threshold=0.3, offset=0)
    assert got.device.type == "cuda" and got.tolist() == want
