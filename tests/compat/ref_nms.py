"""Independent references for mmcv's NMS kernels: the kernels' loops over Python floats.

Written from the semantics (research notes mmcv_ops.md), not from envdoctor.compat: every
arithmetic result is rounded to float32 (``f``) as the C++ ``float`` code does; the order is
given (mmcv takes it from torch's ``sort``, which the test computes the same way).
"""

import math
import struct


def f(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def _iou_terms(a, b, offset):
    w = max(0.0, f(f(min(a[2], b[2]) - max(a[0], b[0])) + offset))
    h = max(0.0, f(f(min(a[3], b[3]) - max(a[1], b[1])) + offset))
    return f(w * h)


def area(a, offset):
    return f(f(f(a[2] - a[0]) + offset) * f(f(a[3] - a[1]) + offset))


def nms_ref(boxes, order, thr, offset, rule="cpu"):
    """Kept box indices; ``rule`` "cpu": inter/union > thr, "cuda": inter > thr*union."""
    boxes = [[f(v) for v in b] for b in boxes]
    thr = f(thr)
    areas = [area(b, offset) for b in boxes]
    removed = set()
    keep = []
    for p, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[p + 1:]:
            if j in removed:
                continue
            inter = _iou_terms(boxes[i], boxes[j], offset)
            union = f(f(areas[i] + areas[j]) - inter)
            if rule == "cpu":
                hit = f(inter / union) > thr if union != 0 else False
            else:
                hit = inter > f(thr * union)
            if hit:
                removed.add(j)
    return keep


def softnms_ref(boxes, scores, thr, sigma, min_score, method, offset):
    """(dets rows, indices) of mmcv's CPU soft-NMS, literally: select max, reweight, drop."""
    n = len(boxes)
    items = [[f(b[0]), f(b[1]), f(b[2]), f(b[3]), f(s), None, k]
             for k, (b, s) in enumerate(zip(boxes, scores))]
    for it in items:
        it[5] = area(it, offset)
    thr, sigma, min_score = f(thr), f(sigma), f(min_score)
    dets = []
    i = 0
    while i < n:
        m = i
        for p in range(i + 1, n):
            if items[m][4] < items[p][4]:
                m = p
        items[i], items[m] = items[m], items[i]
        cur = items[i]
        dets.append(cur[:5])
        p = i + 1
        while p < n:
            inter = _iou_terms(cur, items[p], offset)
            ovr = f(inter / f(f(cur[5] + items[p][5]) - inter))
            w = 1.0
            if method == 0 and ovr >= thr:
                w = 0.0
            elif method == 1 and ovr >= thr:
                w = f(1 - ovr)
            elif method == 2:
                w = f(math.exp(f(-f(ovr * ovr) / sigma)))
            items[p][4] = f(items[p][4] * w)
            if items[p][4] < min_score:
                items[p] = items[n - 1]
                n -= 1
                continue
            p += 1
        i += 1
    return dets, [it[6] for it in items[:n]]


def nms_match_ref(dets, order, thr):
    boxes = [[f(v) for v in d[:4]] for d in dets]
    thr = f(thr)
    areas = [area(b, 0) for b in boxes]
    removed = set()
    groups = []
    for p, i in enumerate(order):
        if i in removed:
            continue
        g = [i]
        for j in order[p + 1:]:
            if j in removed:
                continue
            inter = _iou_terms(boxes[i], boxes[j], 0)
            if f(inter / f(f(areas[i] + areas[j]) - inter)) >= thr:
                removed.add(j)
                g.append(j)
        groups.append(g)
    return groups
