"""Training-pixel sampling and the datamanager's buffer of inpainted images.

Observed reconstruction rays must never land in a mask; inpainting patches must overlap the mask and stay inside
the image; the inpainted-image buffer keeps the original pixels outside the masks bit-exactly and survives a
checkpoint round trip.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.datamanager import MaldDataManager, MaldDataManagerConfig
from mald_nerfstudio.data.image_io import read_rgb
from mald_nerfstudio.data.patch_sampling import PixelPools, sample_observed, sample_patches
from mald_nerfstudio.data.training_batch import patch_rays
from mald_nerfstudio.errors import MaldInputError
from tests.data.test_dataparsers import HEIGHT, WIDTH, box_mask, write_spinnerf_scene


def random_masks(num_views: int = 3, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> torch.Tensor:
    """Bool [N, H, W] masks made of a few random rectangles per view."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_views, height, width), dtype=bool)
    for view in range(num_views):
        for _ in range(3):
            y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
            masks[view, y : y + rng.integers(2, 12), x : x + rng.integers(2, 12)] = True
    return torch.from_numpy(masks)


# ------------------------------------------------------------------------------------------- ray sampling
def test_observed_rays_never_fall_in_a_mask():
    masks = random_masks()
    pools = PixelPools.from_masks(masks)
    rays = sample_observed(pools, 20000, torch.Generator().manual_seed(1))
    v, y, x = rays.unbind(-1)
    assert rays.shape == (20000, 3)
    assert v.min() >= 0 and v.max() < len(masks) and y.min() >= 0 and y.max() < HEIGHT and x.min() >= 0
    assert x.max() < WIDTH
    assert not masks[v, y, x].any()
    # Uniform over the observed pixels: every view is drawn about in proportion to its observed area.
    observed_per_view = (~masks).flatten(1).sum(1).double()
    share = torch.bincount(v, minlength=len(masks)).double() / len(v)
    torch.testing.assert_close(share, observed_per_view / observed_per_view.sum(), atol=0.02, rtol=0)


def test_pools_index_views_rows_and_columns_correctly():
    masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    masks[1, 7, 33] = True
    pools = PixelPools.from_masks(masks)
    assert pools.unravel(pools.masked).tolist() == [[1, 7, 33]]
    assert len(pools.observed) == masks.numel() - 1


def _corner_masks(corner: str) -> torch.Tensor:
    masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    y = 0 if corner[0] == "t" else HEIGHT - 1
    x = 0 if corner[1] == "l" else WIDTH - 1
    masks[1, y, x] = True  # one pixel, view 1 only
    return masks


@pytest.mark.parametrize("patch_size", [7, 8])
@pytest.mark.parametrize("layout", ["random", "tl", "tr", "bl", "br", "edges"])
def test_every_patch_overlaps_the_mask_and_lies_inside_the_image(layout, patch_size):
    if layout == "random":
        masks = random_masks(seed=4)
    elif layout == "edges":
        masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
        masks[0, 0, 10:20] = True  # top row
        masks[1, 5:25, WIDTH - 1] = True  # right column
    else:
        masks = _corner_masks(layout)
    pools = PixelPools.from_masks(masks)
    patches = sample_patches(pools, 200, patch_size, torch.Generator().manual_seed(2))
    assert patches.shape == (200, patch_size, patch_size, 3)
    v, y, x = patches.unbind(-1)
    assert y.min() >= 0 and y.max() < HEIGHT and x.min() >= 0 and x.max() < WIDTH
    # Each patch is one P x P window of one view.
    assert (v == v[:, :1, :1]).all()
    offsets = torch.arange(patch_size)
    assert (y == y[:, :1, :1] + offsets[None, :, None]).all()
    assert (x == x[:, :1, :1] + offsets[None, None, :]).all()
    assert masks[v, y, x].flatten(1).any(dim=1).all()
    if layout in ("tl", "tr", "bl", "br"):
        assert (v == 1).all()


# ---------------------------------------------------------------------------------------- the datamanager
@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """6 views, 2 object-free eval views; view 3 (train index 1) has an empty mask, view 5 a corner mask."""
    masks = {3: np.zeros((HEIGHT, WIDTH), np.uint8), 5: box_mask(box=(HEIGHT - 6, HEIGHT, WIDTH - 9, WIDTH))}
    return write_spinnerf_scene(
        tmp_path_factory.mktemp("dm-scene"), num_views=6, num_test=2, masks=masks, scene_info={"num_test_views": 2}
    )


def make_datamanager(scene: Path, **overrides) -> MaldDataManager:
    """A mald datamanager as the trainer builds it, on CPU, without a model."""
    options = dict(train_num_rays_per_batch=256, num_inpaint_patches=3, inpaint_patch_size=8)
    options.update(overrides)
    config = MaldDataManagerConfig(dataparser=MaldDataParserConfig(data=scene, mask_dilation_iterations=0), **options)
    return config.setup(device="cpu", test_mode="val")


def test_datamanager_holds_training_views_and_masks(scene):
    dm = make_datamanager(scene)
    assert dm.originals.shape == (4, HEIGHT, WIDTH, 3) and dm.originals.dtype == torch.uint8
    for i, path in enumerate(dm.train_dataset.image_filenames):
        assert torch.equal(dm.originals[i], torch.from_numpy(read_rgb(path)))
    assert dm.views_with_masks().tolist() == [0, 2, 3]  # train view 1 has an empty mask
    assert torch.equal(dm.current, dm.originals)
    assert len(dm.eval_dataset) == 2 and dm.eval_dataset.object_free


def test_next_train_rays_are_observed_and_patches_cut_from_current_images(scene):
    dm = make_datamanager(scene)
    _, before = dm.next_train(0)
    assert before.patches is None and not dm.has_patches  # not inpainted yet (a warm-up): observed rays only
    # As after the initial inpainting: every masked view holds a fill that differs from the original (which still
    # shows the object) at every masked pixel, so a patch cut from the originals cannot pass for one cut from these.
    views = dm.views_with_masks().tolist()
    dm.set_inpainted(views[:-1], 1.0 - dm.originals[views[:-1]].float() / 255.0)  # 255 - x: never equal to x
    assert not dm.has_patches  # one masked view still holds its original
    dm.set_inpainted(views[-1:], 1.0 - dm.originals[views[-1:]].float() / 255.0)
    assert dm.inpainted and dm.has_patches
    inside = dm.masks[views]
    assert (dm.current[views] != dm.originals[views])[inside].all()
    ray_bundle, batch = dm.next_train(0)
    recon = batch.observed.indices
    v, y, x = recon.unbind(-1)
    assert batch.num_observed == 256 and not dm.masks[v, y, x].any()
    torch.testing.assert_close(batch.observed.colours, dm.originals[v, y, x].float() / 255.0, rtol=0, atol=0)
    patches = batch.patches
    pv, py, px = patches.indices.unbind(-1)
    assert patches.real.shape == (3, 8, 8, 3) and patches.mask.shape == (3, 8, 8, 1) and patches.size == 8
    in_patch = patches.mask[..., 0]
    assert in_patch.flatten(1).any(dim=1).all()
    assert torch.equal(in_patch, dm.masks[pv, py, px])
    # The content: the current (inpainted) images' pixels at the patch positions, exactly, fills included.
    assert torch.equal(patches.real, dm.current[pv, py, px].float() / 255.0)
    originals = dm.originals[pv, py, px].float() / 255.0
    assert (patches.real != originals).any(dim=-1)[in_patch].all(), "a patch shows the original object"
    assert len(ray_bundle) == 256 + 3 * 8 * 8 == dm.get_train_rays_per_batch()
    expected_cameras = torch.cat([v, pv.reshape(-1)])
    assert torch.equal(ray_bundle.camera_indices[:, 0].long(), expected_cameras)
    assert torch.equal(patch_rays(ray_bundle), torch.arange(len(ray_bundle)) >= 256)  # patch rays marked as such
    assert torch.equal(patch_rays(ray_bundle[256:]), torch.ones(3 * 8 * 8, dtype=torch.bool))  # kept when sliced


def test_patch_larger_than_images_is_an_input_error(scene):
    with pytest.raises(MaldInputError) as info:
        make_datamanager(scene, inpaint_patch_size=HEIGHT + 1)
    assert str(scene) in str(info.value) and "inpaint-patch-size" in info.value.fix


def test_set_inpainted_keeps_original_pixels_outside_mask_bit_exactly(scene):
    dm = make_datamanager(scene)
    originals = dm.originals.clone()
    views = [0, 3]
    fills = torch.rand(2, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(5))
    dm.set_inpainted(views, fills)
    for k, view in enumerate(views):
        inside = dm.masks[view]
        assert inside.any()
        assert torch.equal(dm.current[view][~inside], originals[view][~inside])
        expected = (fills[k] * 255.0).round().to(torch.uint8)
        assert torch.equal(dm.current[view][inside], expected[inside])
    assert torch.equal(dm.current[[1, 2]], originals[[1, 2]])  # views not updated
    assert torch.equal(dm.originals, originals)  # originals are never overwritten
    # The training dataset now serves the inpainted image, as a copy: what reads the dataset cannot change the buffer.
    served, before = dm.train_dataset.get_numpy_image(3), dm.current[3].clone()
    assert np.array_equal(served, before.numpy())
    served[...] = 0
    assert torch.equal(dm.current[3], before) and before.any()


def test_extra_state_round_trips_the_image_buffer(scene):
    dm = make_datamanager(scene)
    dm.set_inpainted([0, 2, 3], torch.rand(3, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(6)))
    # Through a real checkpoint: state_dict -> torch.save -> torch.load(weights_only=True) -> load_state_dict.
    buffer = io.BytesIO()
    torch.save(dm.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    extra = state["_extra_state"]
    assert extra["views"].tolist() == [0, 2, 3]  # only views with a mask; view 1's (empty) mask has no fill
    assert torch.equal(extra["inpainted"], dm.current[[0, 2, 3]])

    restored = make_datamanager(scene)
    assert not torch.equal(restored.current, dm.current)
    restored.load_state_dict(state)
    assert torch.equal(restored.current, dm.current)
    assert restored.inpainted and not make_datamanager(scene).inpainted
    assert torch.equal(restored.originals, dm.originals)


def test_extra_state_from_another_scene_is_rejected(scene, tmp_path):
    other = write_spinnerf_scene(
        tmp_path,
        num_views=4,
        num_test=1,
        width=20,
        height=16,
        masks={i: box_mask(20, 16, (4, 8, 4, 8)) for i in range(4)},
        scene_info={"num_test_views": 1},
    )
    state = make_datamanager(other, inpaint_patch_size=4).get_extra_state()
    dm = make_datamanager(scene)
    with pytest.raises(MaldInputError) as info:
        dm.set_extra_state(state)
    assert str(scene) in str(info.value) and info.value.fix
