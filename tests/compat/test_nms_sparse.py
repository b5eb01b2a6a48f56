"""The fast exact paths of nms and softnms (envdoctor/compat/nms_sparse.py): only overlapping
pairs are tested, the greedy runs as a vectorised fixpoint plus a sequential finish, soft-NMS
selects in rounds.  Held against the loop references (ref_nms.py) and against the full
pairwise paths they replace, on the cases where a shortcut would show: long suppression
chains (the order decides), ties, everything suppressed, large N, both offsets and rules."""

import pytest
import torch

from envdoctor.compat import ext
from envdoctor.compat import nms as N
from envdoctor.compat import nms_sparse as S
from ref_nms import nms_ref, softnms_ref


def _dense_keep(boxes_sorted, thr, offset, rule):
    """The full pairwise matrix and the bit-set scan (the path kept for the other cases)."""
    x1, y1, x2, y2 = N._columns(boxes_sorted)
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    return N.greedy_keep(boxes_sorted.shape[0], lambda r, c: N._overlap_rows(
        x1, y1, x2, y2, areas, r, c, offset, thr, rule), x1.device)


def _boxes(seed, n, size=(8, 256), scale=(1333.0, 800.0)):
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(n, 2, generator=g) * torch.tensor(scale)
    wh = torch.rand(n, 2, generator=g) * (size[1] - size[0]) + size[0]
    return torch.cat([ctr - wh / 2, ctr + wh / 2], 1), torch.rand(n, generator=g)


def _chain(n, step=3.0, width=10.0):
    """Boxes sliding along x: each overlaps the next few, so keeping box i decides i+1..."""
    x = torch.arange(n, dtype=torch.float32) * step
    return torch.stack([x, torch.zeros(n), x + width, torch.full((n,), 10.0)], 1)


def test_a_chain_is_decided_in_greedy_order():
    # IoU(i, i+1) = 7/13 > 0.5, IoU(i, i+2) = 4/16 < 0.5: the greedy keeps every other box.
    # Suppressing on any edge regardless of the order would keep box 0 only.
    boxes = _chain(5)
    scores = torch.linspace(1, 0.5, 5)
    assert ext.nms(boxes, scores, iou_threshold=0.5, offset=0).tolist() == [0, 2, 4]
    assert nms_ref(boxes.tolist(), list(range(5)), 0.5, 0) == [0, 2, 4]


@pytest.mark.parametrize("rule", ["cpu", "cuda"])
@pytest.mark.parametrize("offset", [0, 1])
def test_long_chains_need_the_sequential_finish(rule, offset):
    # 600 boxes whose suppression depends on the previous decision: far more levels than the
    # vectorised rounds (S._ROUNDS), so the sequential pass finishes the greedy
    boxes = _chain(600, step=2.0, width=9.0)
    for thr in (0.3, 0.5, 0.7):
        t = N._f32(thr)
        want = _dense_keep(boxes, t, offset, rule)
        got = N.nms_keep_sorted(boxes, t, offset, rule)
        assert got.tolist() == want.tolist(), (thr, offset, rule)
    src, dst = S.nms_edges(*N._columns(boxes), (boxes[:, 2] - boxes[:, 0] + offset)
                           * (boxes[:, 3] - boxes[:, 1] + offset), offset, N._f32(0.5), rule)
    assert src.numel() > 0 and bool((src < dst).all())


@pytest.mark.parametrize("offset", [0, 1])
def test_random_scenes_equal_the_loop_reference_and_the_dense_path(offset):
    for seed in range(4):
        boxes, scores = _boxes(seed, 400, size=(8, [40, 256, 700][seed % 3]))
        if seed == 3:
            boxes = boxes.round()  # integer boxes: exact IoU ties with the thresholds
            scores = (scores * 8).round() / 8  # tied scores (torch's unstable sort decides)
        order = scores.sort(0, descending=True)[1]
        for thr in (0.0, 0.3, 0.5, 0.7):
            want = nms_ref(boxes.tolist(), order.tolist(), thr, offset, "cpu")
            assert ext.nms(boxes, scores, iou_threshold=thr, offset=offset).tolist() == want
            for rule in ("cpu", "cuda"):
                t = N._f32(thr)
                assert (N.nms_keep_sorted(boxes[order], t, offset, rule).tolist()
                        == _dense_keep(boxes[order], t, offset, rule).tolist())


def test_large_n_heavy_overlap_and_edge_cases():
    # 3000 boxes in a small scene: millions of candidate pairs (several chunks)
    boxes, scores = _boxes(7, 3000, size=(20, 120), scale=(300.0, 300.0))
    old = S._PAIRS
    S._PAIRS = 1 << 18
    try:
        order = scores.sort(0, descending=True)[1]
        for offset in (0, 1):
            got = N.nms_keep_sorted(boxes[order], N._f32(0.5), offset, "cpu")
            assert got.tolist() == _dense_keep(boxes[order], N._f32(0.5), offset, "cpu").tolist()
    finally:
        S._PAIRS = old
    same = torch.tensor([[1.0, 2.0, 30.0, 40.0]]).repeat(50, 1)
    assert ext.nms(same, torch.rand(50), iou_threshold=0.5, offset=0).numel() == 1
    one = ext.nms(same[:1], torch.ones(1), iou_threshold=0.5, offset=1)
    assert one.tolist() == [0]
    empty = ext.nms(same[:0], torch.ones(0), iou_threshold=0.5, offset=0)
    assert empty.dtype == torch.int64 and empty.numel() == 0
    # float64 boxes are read as float32, like the kernel
    b64, s64 = _boxes(8, 300)
    assert (ext.nms(b64.double(), s64.double(), iou_threshold=0.4, offset=0).tolist()
            == ext.nms(b64, s64, iou_threshold=0.4, offset=0).tolist())


def test_the_sparse_path_is_gated():
    x1 = torch.tensor([0.0, 1.0])
    y1 = torch.zeros(2)
    ok = dict(x1=x1, y1=y1, x2=x1 + 2, y2=y1 + 2)
    areas = torch.full((2,), 4.0)
    assert S.sparse_ok(ok["x1"], ok["y1"], ok["x2"], ok["y2"], areas, 0.5)
    assert not S.sparse_ok(ok["x1"], ok["y1"], ok["x2"], ok["y2"], areas, -0.1)
    assert not S.sparse_ok(ok["x1"], ok["y1"], ok["x2"], ok["y2"], torch.tensor([4.0, 0.0]), 0.5)
    inf = x1.clone()
    inf[1] = float("inf")
    assert not S.sparse_ok(inf, ok["y1"], ok["x2"], ok["y2"], areas, 0.5)
    # a degenerate box (zero area) and a negative threshold go to the full matrix: still exact
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 5.0, 9.0], [9.0, 9.0, 12.0, 12.0]])
    for thr in (-0.5, 0.3):
        want = nms_ref(boxes.tolist(), [0, 1, 2], thr, 0)
        assert ext.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=thr,
                       offset=0).tolist() == want


def _soft(boxes, scores, method, min_score, thr=0.3, sigma=0.5, offset=0):
    dets = boxes.new_full((boxes.shape[0], 5), -7.0)
    inds = ext.softnms(boxes, scores, dets, iou_threshold=thr, sigma=sigma,
                       min_score=min_score, method=method, offset=offset)
    return inds, dets


@pytest.mark.parametrize("method", [0, 1, 2])
@pytest.mark.parametrize("offset", [0, 1])
def test_softnms_rounds_equal_the_loop_reference(method, offset):
    for seed, min_score in ((0, 0.001), (1, 0.3), (2, 0.05)):
        boxes, scores = _boxes(seed, 150, size=(20, 400))
        fast = S.softnms_fast(boxes, scores, offset, method, N._f32(0.3), N._f32(0.5),
                              N._f32(min_score))
        assert fast is not None  # distinct scores: the round path decides
        dets_want, inds_want = softnms_ref(boxes.tolist(), scores.tolist(), 0.3, 0.5,
                                           min_score, method, offset)
        inds, dets = _soft(boxes, scores, method, min_score, offset=offset)
        assert inds.tolist() == inds_want, (seed, method, min_score)
        assert dets[:len(inds)].tolist() == dets_want
        assert (dets[len(inds):] == -7.0).all()


def test_softnms_falls_back_where_the_rounds_cannot_prove_the_order():
    boxes, scores = _boxes(3, 120, size=(20, 300))
    tied = (scores * 6).round() / 6  # ties at the top: the kernel's array positions decide
    assert S.softnms_fast(boxes, tied, 0, 2, N._f32(0.3), 0.5, N._f32(0.001)) is None
    assert S.softnms_fast(boxes, scores, 0, 2, N._f32(0.3), 0.5, 0.0) is None  # min_score 0
    assert S.softnms_fast(boxes, scores, 0, 0, 0.0, 0.5, N._f32(0.001)) is None  # hard, thr 0
    assert S.softnms_fast(boxes, -scores, 0, 1, N._f32(0.3), 0.5, N._f32(0.001)) is None
    for s, min_score, thr in ((tied, 0.001, 0.3), (scores, 0.0, 0.3), (scores, 0.001, 0.0)):
        for method in (0, 2):
            dets_want, inds_want = softnms_ref(boxes.tolist(), s.tolist(), thr, 0.5, min_score,
                                               method, 0)
            inds, dets = _soft(boxes, s, method, min_score, thr=thr)
            assert inds.tolist() == inds_want and dets[:len(inds)].tolist() == dets_want


def test_softnms_large_n_and_edge_cases():
    # 2500 boxes: the padded neighbour table, many rounds; the loop (tested against the
    # reference above and in test_nms.py) is the reference here
    boxes, scores = _boxes(11, 2500, size=(8, 200), scale=(2000.0, 1200.0))
    for method, min_score in ((2, 0.001), (1, 0.2)):
        fast = S.softnms_fast(boxes, scores, 0, method, N._f32(0.3), N._f32(0.5),
                              N._f32(min_score))
        assert fast is not None
        d_loop = boxes.new_full((2500, 5), -7.0)
        i_loop = N._softnms_loop(boxes, scores, d_loop, 0, method, N._f32(0.3), N._f32(0.5),
                                 N._f32(min_score))
        inds, dets = _soft(boxes, scores, method, min_score)
        assert inds.tolist() == i_loop.tolist()
        assert torch.equal(dets, d_loop)
    # all suppressed: identical boxes, hard soft-NMS keeps the best one
    same = torch.tensor([[1.0, 2.0, 30.0, 40.0]]).repeat(30, 1)
    s = torch.linspace(0.9, 0.1, 30)
    inds, dets = _soft(same, s, 0, 0.001)
    assert inds.tolist() == [0] and dets[0].tolist() == pytest.approx([1, 2, 30, 40, 0.9])
    # float64 inputs: read as float32, dets written in float64
    b, sc = _boxes(12, 80, size=(20, 300))
    i32, d32 = _soft(b, sc, 2, 0.001)
    i64, d64 = _soft(b.double(), sc.double(), 2, 0.001)
    assert i32.tolist() == i64.tolist() and d64.dtype == torch.float64
    assert torch.equal(d64[:len(i64)], d32[:len(i32)].double())
    # a single box and no box
    assert _soft(b[:1], sc[:1], 2, 0.001)[0].tolist() == [0]
    assert _soft(b[:0], sc[:0], 2, 0.001)[0].numel() == 0
