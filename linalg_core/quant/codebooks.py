"""Code tables of the quantization formats, computed from their published definitions.

* NormalFloat NF-k (Dettmers et al. 2023, "QLoRA", Appendix E; the k-bit tables of Guo et al.
  2024, "LQ-LoRA"): 2^(k-1) quantiles of N(0, 1) on the positive side and 2^(k-1) - 1 on the
  negative side, at probabilities evenly spaced from ``offset`` = 0.9677083 to 1/2, plus an exact
  zero, normalised to [-1, 1]. :func:`normal_float(4) <normal_float>` equals bitsandbytes' NF4
  table bit for bit (tested).
* bitsandbytes' 8-bit dynamic tree map (Dettmers 2016, "8-Bit Approximations for Parallelism in
  Deep Learning"), the code of its double-quantized absmax.
* Uniform and integer grids for the scale codes and the INT-k formats.

Tables are float32, sorted ascending; :func:`midpoints` gives the bucketize boundaries.
"""

from __future__ import annotations

import functools

import torch

NF_OFFSET = 0.9677083
_TABLES: dict = {}


def _kept(build):
    """Cache a table builder in a plain dict: a traced call (``torch.compile``) then reads the
    stored tensor as a constant instead of tracing the builder (Dynamo looks through
    ``functools.cache``)."""

    @functools.wraps(build)
    def table(*args, **kwargs):
        key = (build.__name__, *args, *sorted(kwargs.items()))
        t = _TABLES.get(key)
        if t is None:
            t = _TABLES[key] = build(*args, **kwargs)
        return t

    return table


@_kept
def normal_float(bits: int, offset: float = NF_OFFSET) -> torch.Tensor:
    """NF-k levels (2^bits,), float32, from -1 to 1 with an exact 0.

    Example:
        >>> from linalg_core.quant.codebooks import normal_float
        >>> [round(v, 4) for v in normal_float(2).tolist()]
        [-1.0, 0.0, 0.3379, 1.0]
    """
    from scipy.stats import norm

    half = 2 ** (bits - 1)
    # float32 probabilities and a float32 normalisation, as in QLoRA's create_normal_map.
    pos = norm.ppf(torch.linspace(offset, 0.5, half + 1)[:-1].numpy()).tolist()
    neg = (-norm.ppf(torch.linspace(offset, 0.5, half)[:-1].numpy())).tolist()
    v = torch.tensor(sorted(pos + [0.0] + neg), dtype=torch.float32)
    return v / v.max()


@_kept
def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """bitsandbytes' dynamic tree code (``create_dynamic_map``), (256,) float32 sorted."""
    data: list[float] = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                    else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        bounds = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        bounds = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data += [0.0, 1.0]
    gap = 2**total_bits - len(data)
    data += [0.0] * gap
    return torch.tensor(sorted(data), dtype=torch.float32)


@_kept
def uniform(bits: int) -> torch.Tensor:
    """k / (2^bits - 1) for k = 0 .. 2^bits - 1: the unsigned code of the block scales."""
    return torch.arange(2**bits, dtype=torch.float32) / (2**bits - 1)


@_kept
def integers(bits: int, signed: bool) -> torch.Tensor:
    """The integers -2^(bits-1) .. 2^(bits-1) - 1 (signed) or 0 .. 2^bits - 1, as float32."""
    lo = -(2 ** (bits - 1)) if signed else 0
    return torch.arange(lo, lo + 2**bits, dtype=torch.float32)


def midpoints(levels: torch.Tensor) -> torch.Tensor:
    """Bucketize boundaries (L - 1,) of sorted levels (L,): (l_k + l_{k+1}) / 2 in float32."""
    return (levels[:-1] + levels[1:]) / 2
