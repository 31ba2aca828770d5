"""The square-root noise-strength schedule of the iterative dataset update."""

from __future__ import annotations

import pytest

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.inpaint.schedule import noise_strength


def test_schedule_matches_formula_at_start_quarter_and_end():
    t_max, t_min, num_updates = 0.9, 0.3, 40
    assert noise_strength(0, num_updates, t_max, t_min) == pytest.approx(t_max)
    # sqrt(1/4) = 1/2: a quarter of the way through, half of the strength range is gone.
    assert noise_strength(num_updates // 4, num_updates, t_max, t_min) == pytest.approx(t_max - 0.5 * (t_max - t_min))
    assert noise_strength(num_updates, num_updates, t_max, t_min) == pytest.approx(t_min)


def test_schedule_clamps_update_index():
    assert noise_strength(-3, 10, t_max=0.8, t_min=0.2) == pytest.approx(0.8)
    assert noise_strength(25, 10, t_max=0.8, t_min=0.2) == pytest.approx(0.2)


def test_schedule_decreases_monotonically():
    values = [noise_strength(k, 16, t_max=1.0, t_min=0.1) for k in range(17)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_single_update_uses_t_max():
    assert noise_strength(0, 0, t_max=0.7, t_min=0.2) == pytest.approx(0.7)


@pytest.mark.parametrize("t_max,t_min", [(0.2, 0.5), (1.2, 0.1), (0.5, -0.1)])
def test_invalid_strength_range_is_rejected(t_max, t_min):
    with pytest.raises(MaldInputError):
        noise_strength(0, 10, t_max=t_max, t_min=t_min)
