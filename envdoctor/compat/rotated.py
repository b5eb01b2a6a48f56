"""mmcv's ``box_iou_rotated`` and ``nms_rotated`` kernels in PyTorch.

Boxes are ``(cx, cy, w, h, angle in radians)`` (mmcv's Python wrappers flip the angle for
``clockwise=False``).  mmcv (common/box_iou_rotated_utils.hpp) shifts both centres to the
pair's midpoint, takes the rectangles' corners, collects edge intersections and contained
corners, orders them with a Graham scan and sums the triangle fan; a box with area below 1e-14
gives 0.  Here the same intersection polygon comes from clipping one rectangle by the other's
four half-planes (Sutherland-Hodgman, vectorised over pairs, float64 internally, in the same
midpoint-centred coordinates): the same area up to float rounding, so IoU values equal mmcv's
within float32 rounding, and an NMS decision can differ only for a pair whose IoU equals the
threshold to that rounding.

* ``box_iou_rotated(boxes1, boxes2, ious, mode_flag, aligned)``: ``mode_flag`` 0 IoU
  (``inter / (area1 + area2 - inter)``), 1 IoF (``inter / area1``); all pairs (N*M,
  row-major) or aligned pairs; written into ``ious``.  mmcv's CPU kernel reads float32.
* ``nms_rotated(dets, scores, order, dets_sorted, labels, iou_threshold, multi_label)``:
  greedy in descending score (torch's sort, as mmcv calls it); suppress on ``iou >= thr`` for
  CPU tensors and ``iou > thr`` for CUDA tensors (mmcv's two kernels); labels are not compared
  by either kernel (mmcv's callers offset boxes per class); returns kept indices best first.
"""

import torch

from .nms import _f32, greedy_keep

__all__ = ["box_iou_rotated", "nms_rotated", "pair_iou", "iou_matrix"]

_PAIRS = 1 << 16  # pairs clipped at once


def _corners(cx, cy, w, h, a):
    """[P, 4, 2] corners in mmcv's order."""
    c = torch.cos(a) * 0.5
    s = torch.sin(a) * 0.5
    p0 = torch.stack((cx - s * h - c * w, cy + c * h - s * w), -1)
    p1 = torch.stack((cx + s * h - c * w, cy - c * h - s * w), -1)
    ctr = torch.stack((cx, cy), -1)
    return torch.stack((p0, p1, 2 * ctr - p0, 2 * ctr - p1), 1)


def _cross(ax, ay, bx, by):
    return ax * by - bx * ay


def _clip_area(subject, clip):
    """Area of the intersection of convex quadrilaterals [P, 4, 2] (either orientation)."""
    P = subject.shape[0]
    dev = subject.device
    poly = subject
    cnt = torch.full((P,), 4, dtype=torch.int64, device=dev)
    e = clip.roll(-1, 1) - clip
    # orientation of the clip polygon: inside is where the cross product has its sign
    orient = torch.sign(_cross(e[:, 0, 0], e[:, 0, 1], e[:, 1, 0], e[:, 1, 1]))
    for k in range(4):
        K = poly.shape[1]
        idx = torch.arange(K, device=dev)
        valid = idx[None, :] < cnt[:, None]
        nxt_i = torch.where(idx[None, :] + 1 < cnt[:, None], idx[None, :] + 1,
                            torch.zeros_like(valid, dtype=torch.int64))
        nxt = poly.gather(1, nxt_i.unsqueeze(-1).expand(P, K, 2))
        a = clip[:, k].unsqueeze(1)
        ek = e[:, k].unsqueeze(1)
        side_c = orient[:, None] * _cross(ek[..., 0], ek[..., 1], poly[..., 0] - a[..., 0],
                                          poly[..., 1] - a[..., 1])
        side_n = orient[:, None] * _cross(ek[..., 0], ek[..., 1], nxt[..., 0] - a[..., 0],
                                          nxt[..., 1] - a[..., 1])
        in_c, in_n = side_c >= 0, side_n >= 0
        denom = side_c - side_n
        t = torch.where(in_c != in_n, side_c / torch.where(denom == 0, torch.ones_like(denom),
                                                           denom), torch.zeros_like(side_c))
        cross_pt = poly + t.unsqueeze(-1) * (nxt - poly)
        cand = torch.stack((poly, cross_pt), 2).reshape(P, 2 * K, 2)
        keep = torch.stack((valid & in_c, valid & (in_c != in_n)), 2).reshape(P, 2 * K)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :8]
        poly = cand.gather(1, order.unsqueeze(-1).expand(P, order.shape[1], 2))
        cnt = keep.sum(1).clamp(max=8)
    K = poly.shape[1]
    idx = torch.arange(K, device=dev)
    valid = idx[None, :] < cnt[:, None]
    nxt_i = torch.where(idx[None, :] + 1 < cnt[:, None], idx[None, :] + 1,
                        torch.zeros_like(valid, dtype=torch.int64))
    nxt = poly.gather(1, nxt_i.unsqueeze(-1).expand(P, K, 2))
    terms = _cross(poly[..., 0], poly[..., 1], nxt[..., 0], nxt[..., 1]) * valid
    area = terms.sum(1).abs() / 2
    return torch.where(cnt >= 3, area, torch.zeros_like(area))


def pair_iou(b1, b2, mode_flag=0):
    """IoU (mode 0) or IoF (mode 1) of box pairs [P, 5] x [P, 5], float64."""
    b1 = b1.to(torch.float64)
    b2 = b2.to(torch.float64)
    mx = (b1[:, 0] + b2[:, 0]) / 2
    my = (b1[:, 1] + b2[:, 1]) / 2
    area1 = b1[:, 2] * b1[:, 3]
    area2 = b2[:, 2] * b2[:, 3]
    p1 = _corners(b1[:, 0] - mx, b1[:, 1] - my, b1[:, 2], b1[:, 3], b1[:, 4])
    p2 = _corners(b2[:, 0] - mx, b2[:, 1] - my, b2[:, 2], b2[:, 3], b2[:, 4])
    inter = _clip_area(p1, p2)
    base = area1 + area2 - inter if int(mode_flag) == 0 else area1
    iou = inter / torch.where(base == 0, torch.ones_like(base), base)
    return torch.where((area1 < 1e-14) | (area2 < 1e-14), torch.zeros_like(iou), iou)


def iou_matrix(b1, b2, mode_flag=0):
    """[n, m] IoU/IoF (float64) of all pairs, clipping only the pairs that can overlap.

    Rectangles whose circumscribed circles are apart (with a 0.1 % margin) cannot intersect:
    their IoU is 0, as in mmcv's kernel (no intersection point, no contained corner), so only
    the remaining pairs are clipped -- in a detector's NMS most pairs are far apart.
    """
    n, m = b1.shape[0], b2.shape[0]
    out = torch.zeros((n, m), dtype=torch.float64, device=b1.device)
    if n == 0 or m == 0:
        return out
    a = b1.to(torch.float64)
    c = b2.to(torch.float64)
    ra = torch.sqrt(a[:, 2] ** 2 + a[:, 3] ** 2) / 2
    rc = torch.sqrt(c[:, 2] ** 2 + c[:, 3] ** 2) / 2
    rows = max(1, _PAIRS // max(1, m))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        d2 = (a[r0:r1, None, 0] - c[None, :, 0]) ** 2 + (a[r0:r1, None, 1] - c[None, :, 1]) ** 2
        reach = (ra[r0:r1, None] + rc[None, :]) * 1.001 + 1e-9
        i, j = torch.nonzero(d2 <= reach * reach, as_tuple=True)
        for k0 in range(0, i.shape[0], _PAIRS):
            ii, jj = i[k0:k0 + _PAIRS], j[k0:k0 + _PAIRS]
            out[ii + r0, jj] = pair_iou(b1[ii + r0], b2[jj], mode_flag)
    return out


def box_iou_rotated(boxes1, boxes2, ious, mode_flag, aligned):
    """``mmcv._ext.box_iou_rotated``: fills ``ious`` (N*M row-major, or N when aligned)."""
    b1 = boxes1.detach()[:, :5].to(torch.float32)
    b2 = boxes2.detach()[:, :5].to(torch.float32)
    if aligned:
        res = torch.cat([pair_iou(b1[i:i + _PAIRS], b2[i:i + _PAIRS], mode_flag)
                         for i in range(0, b1.shape[0], _PAIRS)] or [b1.new_zeros(0).double()])
    else:
        res = iou_matrix(b1, b2, mode_flag).reshape(-1)
    ious.view(-1).copy_(res.to(torch.float32).to(ious.dtype))


def nms_rotated(dets, scores, order, dets_sorted, labels, iou_threshold, multi_label):
    """``mmcv._ext.nms_rotated``: kept indices in descending score order."""
    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=dets.device)
    thr = _f32(iou_threshold)
    srt = scores.sort(0, descending=True)[1]
    boxes = dets.detach()[:, :5].index_select(0, srt)
    # the kernels compute in the boxes' dtype; compare the float64 IoU at that precision
    work = boxes.dtype if boxes.dtype in (torch.float32, torch.float64) else torch.float32
    cuda = dets.device.type == "cuda"

    def block(rows, cols):
        iou = iou_matrix(boxes[rows], boxes[cols], 0).to(work)
        return iou > thr if cuda else iou >= thr

    n = boxes.shape[0]
    keep = greedy_keep(n, block, boxes.device, rows_per_block=max(64, _PAIRS // max(1, n)))
    return srt[keep.to(srt.device)]
