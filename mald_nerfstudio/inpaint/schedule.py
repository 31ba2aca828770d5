"""The noise-strength schedule of the iterative dataset update (MALD-NeRF, Sec. 3.3).

Update ``k`` of ``K`` re-inpaints views with partial DDIM at strength

    t(k) = t_max - (t_max - t_min) * sqrt(k / K),

so early updates change the training images a lot and late updates only refine what the NeRF already agrees
on. Strength is the fraction of the diffusion run from the render (1 = start from pure noise, 0 = keep the
render); see :mod:`mald_nerfstudio.inpaint.partial_ddim`.
"""

from __future__ import annotations

import math

from mald_nerfstudio.errors import MaldInputError


def noise_strength(k: int, num_updates: int, t_max: float, t_min: float) -> float:
    """Strength of update ``k``: ``t_max - (t_max - t_min) * sqrt(k / K)`` with ``k`` clamped to ``[0, K]``.

    Args:
        k: index of the dataset update (0 = first).
        num_updates: ``K``, the index of the last update; ``K = 0`` means a single update at ``t_max``.
        t_max: strength of the first update, in ``[0, 1]``.
        t_min: strength of the last update, in ``[0, t_max]``.
    """
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise MaldInputError(
            f"the noise schedule needs 0 <= t_min <= t_max <= 1, got t_min={t_min}, t_max={t_max}",
            fix="set the strengths of the last and first dataset updates accordingly",
        )
    if num_updates < 0:
        raise MaldInputError(f"the number of dataset updates must be >= 0, got {num_updates}")
    if num_updates == 0:
        return float(t_max)
    k = min(max(int(k), 0), num_updates)
    return float(t_max - (t_max - t_min) * math.sqrt(k / num_updates))
