"""Float16 for kernels whose CUDA versions take half but whose compat modules compute in
float32/float64 only (RoIAlign, rotated RoIAlign, multi-scale deformable attention).

mmcv's CUDA kernels for these dispatch ``AT_DISPATCH_FLOATING_TYPES_AND_HALF`` and do their
arithmetic in half (each operation rounded to float16); its CPU kernels take no half at all.
The stand-in computes a float16 call in float32 -- the inputs are exact in float32 -- and
rounds each result once into the caller's float16 tensors: within half-precision rounding of
mmcv's CUDA result, and closer to the exact value.  Only the tensors the kernel writes (named
per kernel) are written back, so inputs mmcv saved for its backward keep their version.
"""

import functools
import inspect

import torch

__all__ = ["via_float32"]


def via_float32(fn, writes=()):
    """``fn`` serving float16 tensors through float32; ``writes`` names its in-place outputs."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        if not any(isinstance(v, torch.Tensor) and v.dtype == torch.float16
                   for v in bound.arguments.values()):
            return fn(*args, **kwargs)
        originals = {}
        for name, v in bound.arguments.items():
            if isinstance(v, torch.Tensor) and v.dtype == torch.float16:
                originals[name] = v
                bound.arguments[name] = v.detach().to(torch.float32)
        out = fn(*bound.args, **bound.kwargs)
        with torch.no_grad():
            for name in writes:
                if name in originals:
                    dst, src = originals[name], bound.arguments[name]
                    if dst.shape != src.shape:
                        dst.resize_(src.shape)
                    dst.copy_(src)
        if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
            out = out.to(torch.float16)
        return out

    return wrapper
