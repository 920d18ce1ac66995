"""Exact row-wise top-k through group maxima (a cheaper ``torch.topk`` for wide rows).

Split each row of n scores into G strided groups (group g = {g, g+G, g+2G, …}). Every one of the
row's k largest values lies in a group whose maximum is ≥ the k-th largest value, and at most k
groups have such a maximum; so the k largest values all lie in the k groups with the largest
maxima. Hence: group maxima (one vectorised pass), top-k of the G maxima, gather those k groups'
n/G members, top-k of the k·n/G candidates. The result is the same set as ``torch.topk`` (ties
may pick different indices with equal values). Strided groups make the max-reduction a
contiguous, vectorised elementwise max over n/G row slices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_WIDTH = 4096
"""Rows narrower than this use torch.topk (the group pass does not pay)."""


def group_count(n: int, k: int) -> int | None:
    """The number of strided groups to use for rows of width n, or None for plain torch.topk.
    Aim at groups of ~8 members with at least 4k groups (so the candidate set, k·n/G, is ≤ n/4)."""
    if n < MIN_WIDTH:
        return None
    for members in (8, 4, 16, 2):
        if n % members == 0 and n // members >= 4 * k:
            return n // members
    return None


def gpu_group_members(n: int, k: int) -> int:
    """Members per strided group on the GPU path (1: no groups, plain top-k of every score).

    The GPU path ranks two things per row: the n/m group maxima, then the k·m members of the k
    best groups; both cost about their length, so m ≈ √(n/k) (a power of two, at most 64, with at
    least k groups) keeps their sum near its minimum: at n = 98,304 latents and k = 32, 32-member
    groups rank 3,072 + 1,024 values instead of 98,304."""
    m = 1 << max(0, min(6, int(math.log2(max(1.0, math.sqrt(n / max(1, k)))))))
    while m > 1 and (n % m or n // m < k):
        m //= 2
    return m


def topk_groups(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(values, indices) of the k largest entries of each row of ``scores`` (B, n), unsorted."""
    B, n = scores.shape
    G = group_count(n, k)
    if G is None or scores.stride(1) != 1:
        return scores.topk(k, dim=1, sorted=False)
    members = n // G
    group_max = scores.view(B, members, G).amax(1)                      # (B, G)
    groups = group_max.topk(k, dim=1, sorted=False).indices              # (B, k)
    cand = (groups.unsqueeze(2) + G * torch.arange(members, device=scores.device)).reshape(B, k * members)
    values, pos = scores.gather(1, cand).topk(k, dim=1, sorted=False)
    return values, cand.gather(1, pos)
