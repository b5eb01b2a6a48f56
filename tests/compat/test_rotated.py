"""box_iou_rotated and nms_rotated of the mmcv._ext stand-in: mmcv's pinned values, an
independent reference (mmcv's algorithm: edge intersections + contained corners + hull), the
CPU '>=' rule, mmcv's argument conventions."""

import math

import pytest
import torch

from envdoctor.compat import ext

# mmcv tests/test_ops/test_box_iou_rotated.py
B1 = [[1.0, 1.0, 3.0, 4.0, 0.5], [2.0, 2.0, 3.0, 4.0, 0.6], [7.0, 7.0, 8.0, 8.0, 0.4]]
B2 = [[0.0, 2.0, 2.0, 5.0, 0.3], [2.0, 1.0, 3.0, 3.0, 0.5], [5.0, 5.0, 6.0, 7.0, 0.4]]
IOUS = [[0.3708, 0.4351, 0.0000], [0.1104, 0.4487, 0.0424], [0.0000, 0.0000, 0.3622]]
# mmcv tests/test_ops/test_nms_rotated.py
NMS_BOXES = [[6.0, 3.0, 8.0, 7.0, 0.5, 0.7], [3.0, 6.0, 9.0, 11.0, 0.6, 0.8],
             [3.0, 7.0, 10.0, 12.0, 0.3, 0.5], [1.0, 4.0, 13.0, 7.0, 0.6, 0.9]]


def corners(b):
    cx, cy, w, h, a = b
    c, s = math.cos(a) / 2, math.sin(a) / 2
    p0 = (cx - s * h - c * w, cy + c * h - s * w)
    p1 = (cx + s * h - c * w, cy - c * h - s * w)
    return [p0, p1, (2 * cx - p0[0], 2 * cy - p0[1]), (2 * cx - p1[0], 2 * cy - p1[1])]


def inside(p, quad):
    a, b, d = quad[0], quad[1], quad[3]
    ab, ad = (b[0] - a[0], b[1] - a[1]), (d[0] - a[0], d[1] - a[1])
    ap = (p[0] - a[0], p[1] - a[1])
    u, v = ap[0] * ab[0] + ap[1] * ab[1], ap[0] * ad[0] + ap[1] * ad[1]
    eps = 1e-9
    return -eps <= u <= ab[0] ** 2 + ab[1] ** 2 + eps and -eps <= v <= ad[0] ** 2 + ad[1] ** 2 + eps


def ref_iou(b1, b2, mode=0):
    """Intersection points of the edges, corners inside the other box, hull by angle, fan."""
    if b1[2] * b1[3] < 1e-14 or b2[2] * b2[3] < 1e-14:
        return 0.0
    q1, q2 = corners(b1), corners(b2)
    pts = [p for p in q1 if inside(p, q2)] + [p for p in q2 if inside(p, q1)]
    for i in range(4):
        a, b = q1[i], q1[(i + 1) % 4]
        for j in range(4):
            c, d = q2[j], q2[(j + 1) % 4]
            r = (b[0] - a[0], b[1] - a[1])
            s = (d[0] - c[0], d[1] - c[1])
            den = r[0] * s[1] - r[1] * s[0]
            if abs(den) < 1e-14:
                continue
            t = ((c[0] - a[0]) * s[1] - (c[1] - a[1]) * s[0]) / den
            u = ((c[0] - a[0]) * r[1] - (c[1] - a[1]) * r[0]) / den
            if 0 <= t <= 1 and 0 <= u <= 1:
                pts.append((a[0] + t * r[0], a[1] + t * r[1]))
    inter = 0.0
    if len(pts) >= 3:
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        pts.sort(key=lambda p: math.atan2(p[1] - my, p[0] - mx))
        inter = abs(sum(pts[i][0] * pts[(i + 1) % len(pts)][1] - pts[(i + 1) % len(pts)][0] * pts[i][1]
                        for i in range(len(pts)))) / 2
    a1, a2 = b1[2] * b1[3], b2[2] * b2[3]
    return inter / (a1 + a2 - inter) if mode == 0 else inter / a1


def ious_of(b1, b2, mode=0, aligned=False):
    b1, b2 = torch.tensor(b1), torch.tensor(b2)
    out = b1.new_zeros(b1.shape[0] if aligned else b1.shape[0] * b2.shape[0])
    ext.box_iou_rotated(b1, b2, out, mode_flag=mode, aligned=aligned)
    return out if aligned else out.view(b1.shape[0], b2.shape[0])


def test_mmcv_pinned_ious():
    assert (ious_of(B1, B2) - torch.tensor(IOUS)).abs().max().item() <= 1e-4
    aligned = ious_of(B1, B2, aligned=True)
    assert (aligned - torch.tensor([0.3708, 0.4487, 0.3622])).abs().max().item() <= 1e-4


def _random_boxes(seed, n):
    g = torch.Generator().manual_seed(seed)
    b = torch.cat([torch.rand(n, 2, generator=g) * 10, torch.rand(n, 2, generator=g) * 6 + 0.5,
                   (torch.rand(n, 1, generator=g) - 0.5) * 4], 1)
    b[1] = b[0]  # identical boxes
    b[2] = torch.tensor([b[0, 0].item(), b[0, 1].item(), b[0, 2].item() / 2, b[0, 3].item() / 2,
                         b[0, 4].item()])  # nested
    b[3] = torch.tensor([0.0, 0.0, 2.0, 2.0, 0.0])
    b[4] = torch.tensor([2.0, 0.0, 2.0, 2.0, 0.0])  # touching b[3] along an edge
    b[5] = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.3])  # zero area
    return b


@pytest.mark.parametrize("mode", [0, 1])
def test_equals_an_independent_reference(mode):
    b = _random_boxes(0, 40)
    got = ious_of(b.tolist(), b.tolist(), mode)
    bl = b.double().tolist()
    want = torch.tensor([[ref_iou(x, y, mode) for y in bl] for x in bl])
    assert (got.double() - want).abs().max().item() <= 2e-6  # float32 output
    assert got[0, 1] == 1.0 and got[3, 4] == 0.0 and (got[5] == 0).all()


def test_nms_rotated_pinned_and_conventions():
    boxes = torch.tensor(NMS_BOXES)
    # mmcv's Python passes (dets_wl, scores, order, dets_sorted, labels, thr, multi_label)
    order = boxes[:, -1].sort(0, descending=True)[1]
    keep = ext.nms_rotated(boxes[:, :5], boxes[:, -1], order, boxes[order, :5],
                           boxes.new_empty(0, dtype=torch.int), 0.5, False)
    assert keep.tolist() == [3, 1, 0]
    with_labels = torch.cat([boxes[:, :5], torch.tensor([[1.0], [0.0], [1.0], [0.0]])], 1)
    keep = ext.nms_rotated(with_labels, boxes[:, -1], order, with_labels[order],
                           torch.tensor([1, 0, 1, 0]), 0.5, True)
    assert keep.tolist() == [3, 1, 0]  # labels are not compared by mmcv's kernels
    assert ext.nms_rotated(boxes[:0, :5], boxes[:0, -1], order[:0], boxes[:0, :5],
                           boxes.new_empty(0), 0.5, False).tolist() == []


def test_nms_rotated_cpu_suppresses_at_equality():
    # IoU exactly 0.6 (inter 1.5, union 2.5): the CPU kernel suppresses on '>='
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0, 0.0], [0.5, 0.0, 2.0, 1.0, 0.0]])
    scores = torch.tensor([0.9, 0.8])
    e = boxes.new_empty(0)
    assert ext.nms_rotated(boxes, scores, e, e, e, 0.6, False).tolist() == [0]
    assert ext.nms_rotated(boxes, scores, e, e, e, 0.61, False).tolist() == [0, 1]


def test_nms_rotated_equals_greedy_over_the_reference():
    b = _random_boxes(1, 60)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(2))
    order = scores.sort(0, descending=True)[1].tolist()
    bl = b.tolist()
    for thr in (0.1, 0.3, 0.5):
        removed, want = set(), []
        for p, i in enumerate(order):
            if i in removed:
                continue
            want.append(i)
            removed |= {j for j in order[p + 1:] if ref_iou(bl[i], bl[j]) >= thr}
        e = b.new_empty(0)
        assert ext.nms_rotated(b, scores, e, e, e, thr, False).tolist() == want, thr
