"""The dataset update's schedule (which steps, which views, what strength) and its mask-region renders."""

from __future__ import annotations


import pytest
import torch

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.inpaint.base import NoInpainterConfig
from mald_nerfstudio.inpaint.schedule import noise_strength
from mald_nerfstudio.pipeline.dataset_update import (
    DatasetUpdateConfig,
    DatasetUpdater,
    last_update_index,
    render_mask_regions,
    scheduled_update_steps,
)


class _Views:
    """The part of the datamanager the schedule reads: which views have a mask, and which something to fill."""

    def __init__(self, masked_views):
        self.masked = torch.tensor(masked_views)

    def views_with_masks(self):
        return self.masked

    def views_to_fill(self):
        return self.masked


def _updater(config: DatasetUpdateConfig, masked_views=(0, 1, 2, 3, 4, 5), steps: int = 30000, horizon=None):
    updater = DatasetUpdater(config, _Views(list(masked_views)), model=None)
    updater.state.horizon = horizon  # as restored from a checkpoint of a run started for `horizon` steps
    updater.start(NoInpainterConfig().setup(), run_length=steps)
    return updater


def test_updates_run_every_u_steps_from_the_first_update_step_to_the_end_of_the_run():
    config = DatasetUpdateConfig(update_every=200, first_update_step=2000)
    steps = scheduled_update_steps(config, 30000)
    assert steps[:3] == [2000, 2200, 2400] and steps[-1] == 29800 and len(steps) == 140
    assert scheduled_update_steps(DatasetUpdateConfig(enabled=False), 30000) == []
    assert scheduled_update_steps(DatasetUpdateConfig(update_every=5, first_update_step=0), 12) == [1, 6, 11]
    assert last_update_index(config, 30000) == 139
    assert last_update_index(DatasetUpdateConfig(num_updates=10), 30000) == 10


def test_each_update_refreshes_the_next_v_masked_views_in_a_fixed_cycle():
    updater = _updater(DatasetUpdateConfig(views_per_update=4), masked_views=(1, 3, 4, 6, 8, 9))
    assert updater.views_of_update(0) == [1, 3, 4, 6]
    assert updater.views_of_update(1) == [8, 9, 1, 3]  # wraps around: every view is refreshed in turn
    assert updater.views_of_update(2) == [4, 6, 8, 9]
    few = _updater(DatasetUpdateConfig(views_per_update=4), masked_views=(2, 5))
    assert few.views_of_update(7) == [2, 5]  # never the same view twice in one update
    assert _updater(DatasetUpdateConfig(), masked_views=()).views_of_update(0) == []


def test_strength_follows_the_square_root_schedule_and_a_lengthened_run_keeps_its_horizon():
    config = DatasetUpdateConfig(update_every=100, first_update_step=100, t_max=0.8, t_min=0.2)
    updater = _updater(config, steps=1000)  # updates at 100..900: K = 8
    assert updater.last_index == 8 and updater.state.horizon == 1000  # the first start fixes the horizon
    assert [updater.strength(k) for k in (0, 2, 8)] == pytest.approx([0.8, noise_strength(2, 8, 0.8, 0.2), 0.2])
    longer = _updater(config, steps=2000, horizon=1000)  # resumed and lengthened: same K, more updates at t_min
    assert longer.last_index == 8 and len(longer.update_steps) == 19 and longer.strength(15) == pytest.approx(0.2)


def test_a_strength_range_that_does_not_decrease_is_refused_before_any_update():
    with pytest.raises(MaldInputError):
        _updater(DatasetUpdateConfig(t_max=0.3, t_min=0.6))


class _Bundle:
    def __init__(self, indices):
        self.indices = indices

    def reshape(self, shape):
        return _Bundle(self.indices.reshape(*shape, 3))


class _PixelModel(torch.nn.Module):
    """Renders each pixel as (y / 100, x / 100, view / 10) and records its field's mode during renders."""

    def __init__(self):
        super().__init__()
        self.field = torch.nn.Module()
        self.field.embedding_appearance = torch.nn.Embedding(4, 2)
        self.field_modes = []

    def get_outputs_for_camera_ray_bundle(self, bundle):
        self.field_modes.append(self.field.training)
        view, y, x = bundle.indices.unbind(-1)
        return {"rgb": torch.stack([y / 100.0, x / 100.0, view / 10.0], dim=-1).float()}


def test_render_mask_regions_renders_each_mask_box_with_the_views_own_appearance_and_keeps_the_rest():
    height, width = 12, 16
    masks = torch.zeros(3, height, width, dtype=torch.bool)
    masks[0, 2:5, 3:7] = True
    masks[0, 8, 10] = True  # a second blob: the box spans both
    masks[2, 0:2, 14:16] = True  # view 1 has an empty mask
    current = torch.rand(3, height, width, 3)
    model = _PixelModel()
    model.eval()
    out = render_mask_regions(model, _Bundle, views=[5, 6, 7], current=current, masks=masks)
    expected = current.clone()
    for row, view, (top, bottom, left, right) in ((0, 5, (2, 9, 3, 11)), (2, 7, (0, 2, 14, 16))):
        ys, xs = torch.meshgrid(torch.arange(top, bottom), torch.arange(left, right), indexing="ij")
        expected[row, top:bottom, left:right] = torch.stack([ys / 100.0, xs / 100.0, torch.full_like(ys, view) / 10.0],
                                                            dim=-1)
    assert torch.equal(out, expected)
    assert torch.equal(out[1], current[1])  # nothing rendered for a view without mask
    assert model.field_modes == [True, True]  # the field looks up each view's own appearance embedding
    assert not model.training and not model.field.training  # the caller's modes are restored
