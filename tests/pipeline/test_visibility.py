"""Visibility-aware inpainting (issue 22): a masked pixel is seen when another training view observed its surface
point, unoccluded and outside that view's mask; only the rest is inpainted."""

from __future__ import annotations

import numpy as np
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType

from mald_nerfstudio.pipeline.visibility import VisibilityConfig, clean_unseen, seen_pixels, unseen_masks
from tests.training_harness import setup_trainer, tiny_config, train

SIZE, FOCAL = 64, 30.0


def _cameras(*centres) -> Cameras:
    """Pinhole cameras at ``centres`` looking along -z (OpenGL axes), 64 x 64 px, focal 30 px."""
    c2w = torch.zeros((len(centres), 3, 4))
    c2w[:, :3, :3] = torch.eye(3)
    c2w[:, :3, 3] = torch.tensor(centres, dtype=torch.float32)
    n = len(centres)
    return Cameras(camera_to_worlds=c2w, fx=torch.full((n, 1), FOCAL), fy=torch.full((n, 1), FOCAL),
                   cx=torch.full((n, 1), SIZE / 2), cy=torch.full((n, 1), SIZE / 2), width=torch.full((n, 1), SIZE),
                   height=torch.full((n, 1), SIZE), camera_type=CameraType.PERSPECTIVE)


def _plane_depths(cameras: Cameras) -> torch.Tensor:
    """Each view's depth (along unit rays through pixel centres) of the plane z = 0."""
    out = torch.zeros((len(cameras), SIZE, SIZE))
    rows, cols = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    for view in range(len(cameras)):
        height = float(cameras.camera_to_worlds[view, 2, 3])
        direction = torch.stack([(cols - SIZE / 2) / FOCAL, -(rows - SIZE / 2) / FOCAL, -torch.ones_like(rows)], -1)
        out[view] = height * torch.linalg.norm(direction, dim=-1)  # t along the unit ray where z reaches 0
    return out


def test_a_point_is_seen_only_where_another_view_observed_it_unoccluded_and_in_its_image():
    """Camera A at (0, 0, 3), camera B at (1, 0, 3), a plane z = 0. Points of A's hole on the plane:
    (0, 0) and (0, -0.6) B observes; (0, 0.6) lies in B's mask; (-0.5, 0) is hidden from B by a pillar (B's depth
    there is 1); (-2.5, 0) projects left of B's image. Pixel columns in B: 32 + 10 * (x - 1), rows: 32 - 10 * y."""
    cameras = _cameras((0.0, 0.0, 3.0), (1.0, 0.0, 3.0))
    depths = _plane_depths(cameras)
    masks = torch.zeros((2, SIZE, SIZE), dtype=torch.bool)
    masks[1, 24:29, 20:25] = True  # B's mask around row 26, column 22: where (0, 0.6, 0) lands
    depths[1, :, 15:20] = 1.0  # a pillar in front of the plane in B's view, around column 17: x = -0.5
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.6, 0.0], [0.0, 0.6, 0.0], [-0.5, 0.0, 0.0], [-2.5, 0.0, 0.0]])
    seen = seen_pixels(points, 0, cameras, depths, masks, tolerance=0.05)
    assert seen.tolist() == [True, True, False, False, False]
    # A point off the surface (in front of the plane by 0.5) disagrees with B's depth: not seen.
    assert not seen_pixels(torch.tensor([[0.0, 0.0, 0.5]]), 0, cameras, depths, masks, tolerance=0.05).any()
    # A view never counts as seeing its own pixels.
    assert not seen_pixels(points, 0, _cameras((0.0, 0.0, 3.0)), depths[:1], masks[:1], tolerance=0.05).any()


def test_unseen_masks_keep_what_no_other_view_saw():
    """Three cameras on a line above the plane; A's mask is a square at its centre. B (to the right) sees the
    square's plane points except where B's own mask covers them; C (far left) sees nothing of them because a wall
    of near depth covers its whole image. The unseen part is exactly the part that falls in B's mask."""
    cameras = _cameras((0.0, 0.0, 3.0), (1.0, 0.0, 3.0), (-1.0, 0.0, 3.0))
    depths = _plane_depths(cameras)
    depths[2] = 0.5
    masks = torch.zeros((3, SIZE, SIZE), dtype=torch.bool)
    masks[0, 24:40, 24:40] = True  # A's hole: plane x in [-0.8, 0.8) (columns 24..39 <-> x = (col + 0.5 - 32) / 10)
    masks[1, :, 10:20] = True  # B's mask covers columns 10..19: plane x in about [-1.2, -0.2)
    config = VisibilityConfig(cleaning_radius=0.0, dilation=0.0)
    unseen = unseen_masks(cameras, depths, masks, [0], config)[0]
    cols = torch.arange(SIZE)
    x = (cols + 0.5 - SIZE / 2) * 3.0 / FOCAL  # plane x of A's pixel centres
    col_in_b = torch.floor(FOCAL * (x - 1.0) / 3.0 + SIZE / 2)
    expected_cols = (cols >= 24) & (cols < 40) & (col_in_b >= 10) & (col_in_b < 20)
    expected = masks[0] & expected_cols[None, :]
    assert expected.any() and (masks[0] & ~expected).any()  # both cases occur
    assert torch.equal(unseen, expected)
    assert not (unseen & ~masks[0]).any()


def test_seen_pixels_take_the_colour_the_other_view_observed_there():
    """The same three cameras: each of A's seen pixels gets B's colour at the pixel its plane point projects to (B's
    image is a ramp over columns); unseen pixels get none."""
    cameras = _cameras((0.0, 0.0, 3.0), (1.0, 0.0, 3.0), (-1.0, 0.0, 3.0))
    depths = _plane_depths(cameras)
    depths[2] = 0.5
    masks = torch.zeros((3, SIZE, SIZE), dtype=torch.bool)
    masks[0, 24:40, 24:40] = True
    masks[1, :, 10:20] = True
    images = torch.zeros((3, SIZE, SIZE, 3), dtype=torch.uint8)
    images[1, :, :, 0] = (torch.arange(SIZE) * 4).to(torch.uint8)[None, :]  # B's red channel: 4 x column
    images[1, :, :, 1] = 200
    config = VisibilityConfig(cleaning_radius=0.0, dilation=0.0)
    unseen, seen = unseen_masks(cameras, depths, masks, [0], config, images=images)
    assert torch.equal(unseen[0], unseen_masks(cameras, depths, masks, [0], config)[0])
    assert torch.equal(seen.valid[0], masks[0] & ~unseen[0]) and seen.valid.any()
    rows, cols = torch.nonzero(seen.valid[0], as_tuple=True)
    x = (cols + 0.5 - SIZE / 2) * 3.0 / FOCAL
    col_in_b = torch.floor(FOCAL * (x - 1.0) / 3.0 + SIZE / 2).long()
    assert torch.allclose(seen.colours[0, rows, cols, 0], col_in_b.float() * 4 / 255.0)
    assert torch.allclose(seen.colours[0, rows, cols, 1], torch.full((len(rows),), 200 / 255.0))
    assert not seen.colours[0][~seen.valid[0]].any()


def test_cleaning_drops_specks_fills_pin_holes_and_stays_inside_the_mask():
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    unseen = np.zeros_like(mask)
    unseen[10:30, 10:30] = True
    unseen[20, 20] = False  # a pin-hole of seen pixels inside the unseen region
    unseen[6, 33] = True  # a speck
    cleaned = clean_unseen(unseen, mask, radius_px=1, dilation_px=0)
    assert cleaned[20, 20] and not cleaned[6, 33] and cleaned[11:29, 11:29].all()  # (a disc rounds corners)
    grown = clean_unseen(unseen, mask, radius_px=1, dilation_px=2)
    assert grown[8, 15] and not grown[7, 15]  # grown by two pixels
    edge = np.zeros_like(mask)
    edge[5:15, 5:15] = True
    assert not (clean_unseen(edge, mask, radius_px=0, dilation_px=3) & ~mask).any()


def test_after_the_warm_up_only_the_unseen_part_is_inpainted_and_patched(demo_scene, tmp_path):
    """End to end on the demo scene: the warm-up ends with depths rendered, unseen masks saved as PNGs, the
    inpainter given the render in the seen part, patches whose masks lie inside the unseen masks, and a checkpoint
    that restores the unseen masks."""
    calls = []

    def edit(config):
        config.pipeline.dataset_update.warmup_steps = 30
        config.pipeline.dataset_update.first_update_step = 35
        config.pipeline.dataset_update.update_every = 100
        config.pipeline.visibility.enabled = True
        config.steps_per_save = 40

    config = tiny_config(demo_scene, tmp_path, steps=41, edit=edit)
    trainer = setup_trainer(config)
    inpainter = trainer.pipeline.inpainter
    original_inpaint = inpainter.inpaint

    def spy(images, masks, init=None, strength=1.0, seeds=None):
        calls.append((images.clone(), masks.clone()))
        return original_inpaint(images, masks, init=init, strength=strength, seeds=seeds)

    inpainter.inpaint = spy
    trainer.train()
    manager = trainer.pipeline.datamanager
    assert trainer.pipeline.updater.state.visibility_step == 29
    views = manager.views_with_masks().tolist()
    fill = manager.view_fill_masks(views)
    masks = manager.masks[views]
    assert not (fill & ~masks).any()
    assert fill.sum() < masks.sum()  # the demo's cameras see some of the wall and floor behind the ball
    folder = trainer.base_dir / "unseen_masks" / "step_000029"
    assert len(list(folder.glob("*.png"))) == len(views)
    # The inpainter got the colours other views observed (the render where none was found), not the ball, in the
    # seen part of each mask; those colours are what the seen part is trained on.
    images, given_masks = calls[0]
    originals, current, first_masks = manager.view_images(views[: len(images)])
    seen = first_masks & ~given_masks
    trained = manager.view_seen_trained(views[: len(images)])
    assert seen.any() and trained.any() and not (trained & ~seen).any()
    assert (images[seen] - originals[seen]).abs().mean() > 0.05
    assert torch.allclose(images[trained], current[trained], atol=1 / 255)
    # Observed rays now include the trained seen pixels, with those colours.
    for step in range(100, 120):
        ray_bundle, batch = manager.next_train(step)
        v, y, x = batch.observed.indices.unbind(-1)
        inside = manager.masks[v, y, x]
        assert not (inside & ~manager.seen_trained[v, y, x]).any()
        if inside.any():
            break
    assert inside.any()
    assert torch.equal(batch.observed.colours, manager.current[v, y, x].float() / 255.0)
    assert (batch.observed.colours[inside] - manager.originals[v, y, x][inside].float() / 255.0).abs().mean() > 0.05
    # Patches are judged on the unseen part only.
    _, batch = manager.next_train(100)
    patch_views, ys, xs = batch.patches.indices.reshape(-1, 3).unbind(-1)
    assert torch.equal(batch.patches.mask.reshape(-1), manager.fill_masks[patch_views, ys, xs])
    # A resumed run gets the same unseen masks from the checkpoint.
    resumed = setup_trainer(tiny_config(demo_scene, tmp_path / "resumed", steps=41, edit=lambda c: (
        edit(c), setattr(c, "load_dir", trainer.checkpoint_dir))))
    assert torch.equal(resumed.pipeline.datamanager.fill_masks, manager.fill_masks)
    assert torch.equal(resumed.pipeline.datamanager.seen_trained, manager.seen_trained)
    assert resumed.pipeline.updater.state.visibility_step == 29


def test_by_default_every_masked_pixel_is_inpainted_and_the_variant_turns_visibility_on(demo_scene, tmp_path):
    from mald_nerfstudio.method_configs.baselines import variant_config
    from mald_nerfstudio.method_configs.mald_nerf import mald_nerf_config, mald_nerf_tiny_config

    for default in (mald_nerf_config(), mald_nerf_tiny_config()):  # the paper's whole masks, no warm-up
        assert not default.pipeline.visibility.enabled and default.pipeline.dataset_update.warmup_steps == 0
    for name, warmup in (("mald-nerf-visibility", 1000), ("mald-nerf-visibility-tiny", 300)):
        variant = variant_config(name)
        assert variant.pipeline.visibility.enabled and variant.pipeline.dataset_update.warmup_steps == warmup
        assert variant.pipeline.dataset_update.first_update_step > warmup
    trainer = train(tiny_config(demo_scene, tmp_path, steps=2))
    manager = trainer.pipeline.datamanager
    assert torch.equal(manager.fill_masks, manager.masks) and trainer.pipeline.updater.state.visibility_step is None
