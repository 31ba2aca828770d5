"""From depth to masks: the box test on surface points, rendering only the rays through the box, cleaning, the
checks on the masked fractions, and the preview."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mald_nerfstudio.box_masks import masks as mk
from mald_nerfstudio.box_masks.box import Box
from mald_nerfstudio.errors import MaldInputError


def _fake_view(depth_value: float = 2.0, size: int = 32):
    """A pinhole view from the origin looking down -z at surfaces ``depth_value`` away along every ray."""
    u = (torch.arange(size) + 0.5) / size - 0.5
    x, y = torch.meshgrid(u, -u, indexing="xy")
    directions = torch.nn.functional.normalize(torch.stack([x, y, -torch.ones_like(x)], dim=-1), dim=-1)
    return torch.zeros_like(directions), directions, torch.full((size, size, 1), depth_value)


def test_empty_and_whole_scene_boxes_on_a_fake_depth_map(tmp_path):
    origins, directions, depth = _fake_view()
    elsewhere = Box(center=(5.0, 5.0, 5.0), size=(1.0, 1.0, 1.0))
    empty = mk.box_mask_from_depth(origins, directions, depth, elsewhere)
    assert not empty.any()
    with pytest.raises(MaldInputError, match="no reconstructed surface in any"):
        mk.check_raw_fractions([empty.mean()] * 3, elsewhere, tmp_path / "config.yml")
    everything = Box(center=(0.0, 0.0, -2.0), size=(10.0, 10.0, 3.0))
    full = mk.box_mask_from_depth(origins, directions, depth, everything)
    assert full.all()
    with pytest.raises(MaldInputError, match="whole scene"):
        mk.check_raw_fractions([full.mean()] * 3, everything, tmp_path / "config.yml")
    part = Box(center=(0.0, 0.0, -1.8), size=(1.0, 1.0, 0.6))  # around a part of the plane
    some = mk.box_mask_from_depth(origins, directions, depth, part)
    assert 0.1 < some.mean() < 0.6
    mk.check_raw_fractions([some.mean(), 0.0], part, tmp_path / "config.yml")


def test_points_are_origin_plus_unit_direction_times_depth():
    """nerfstudio's rays have unit directions and nerfacto's depths (expected and median) are distances along
    them: a sample weight concentrated at distance t gives depth t, and origin + direction * t is the surface."""
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.rays import Frustums, RaySamples
    from nerfstudio.model_components.renderers import DepthRenderer

    camera = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=50.0, fy=50.0, cx=16.0, cy=12.0, width=32,
                     height=24)
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
    assert torch.allclose(bundle.directions.norm(dim=-1), torch.ones(24, 32), atol=1e-5)
    rays = bundle.flatten()[:5]
    t = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0])[:, None]
    edges = torch.linspace(0.5, 4.0, 36)
    starts, ends = edges[:-1].expand(5, -1)[..., None], edges[1:].expand(5, -1)[..., None]
    weights = ((starts <= t[:, None]) & (t[:, None] < ends)).float()
    centres = (starts + ends) / 2
    samples = RaySamples(frustums=Frustums(origins=rays.origins[:, None].expand(-1, 35, -1),
                                           directions=rays.directions[:, None].expand(-1, 35, -1),
                                           starts=starts, ends=ends, pixel_area=torch.ones_like(starts)))
    for method in ("expected", "median"):
        depth = DepthRenderer(method=method)(weights=weights, ray_samples=samples)
        expected = (weights * centres).sum(dim=1)
        assert torch.allclose(depth, expected, atol=1e-5)
    points = rays.origins + rays.directions * expected
    assert torch.allclose((points - rays.origins).norm(dim=-1, keepdim=True), expected, atol=1e-5)


class _PlaneModel:
    """Renders the depth of the plane z = -3 (world) and counts the rays it was asked for."""

    def __init__(self):
        self.rendered = 0

    def get_outputs_for_camera_ray_bundle(self, bundle):
        self.rendered += bundle.shape.numel()
        t = (-3.0 - bundle.origins[..., 2:]) / bundle.directions[..., 2:]
        return {"expected_depth": t, "depth": t}


def test_only_the_rays_through_the_box_are_rendered_and_the_masks_are_those_of_a_full_render():
    from nerfstudio.cameras.cameras import Cameras

    poses = torch.eye(4)[None, :3].repeat(2, 1, 1)
    poses[1, 0, 3] = 0.4  # the second camera is shifted to the right
    cameras = Cameras(camera_to_worlds=poses, fx=40.0, fy=40.0, cx=24.0, cy=16.0, width=48, height=32)
    pipeline = SimpleNamespace(model=_PlaneModel(),
                               datamanager=SimpleNamespace(train_dataparser_outputs=SimpleNamespace(cameras=cameras)))
    box = Box(center=(0.2, 0.1, -3.0), size=(0.8, 0.6, 0.4), rotation=(0.0, 0.0, 0.3))
    views = mk.render_box_masks(pipeline, box, show_progress=False)
    for index, view in enumerate(views):
        bundle = cameras[index : index + 1].generate_rays(camera_indices=0, keep_shape=True)
        full = mk.box_mask_from_depth(bundle.origins, bundle.directions,
                                      _PlaneModel().get_outputs_for_camera_ray_bundle(bundle)["expected_depth"], box)
        assert view.inside.shape == (32, 48) and view.inside.any()
        assert np.array_equal(view.inside, full)
        assert np.array_equal(view.through, box.hit_by(bundle.origins, bundle.directions).numpy())
        assert not (view.inside & ~view.through).any()
    assert pipeline.model.rendered < 0.5 * 2 * 32 * 48


def test_cleaning_fills_enclosed_holes_drops_islands_and_dilates():
    mask = np.zeros((60, 60), bool)
    mask[10:40, 10:40] = True
    mask[14:36, 14:36] = False  # a large enclosed hole: an object's untextured middle at a wrong depth
    mask[50:52, 50:52] = True  # a small island
    mask[0:5, 45:60] = True
    mask[1:3, 50:55] = False  # a hole in a region at the border is still enclosed by it
    view = mk.ViewBoxMask(inside=mask, through=np.ones_like(mask))
    cleaned = mk.clean_mask(view, None, mk.MaskCleaning(drop_islands_px=10, dilate_px=0))
    assert cleaned[10:40, 10:40].all() and not cleaned[50:52, 50:52].any() and cleaned[1:3, 50:55].all()
    open_ring = mask.copy()
    open_ring[20:30, 10:14] = False  # the ring cut open: its inside reaches the border and is no hole
    assert not mk.fill_holes_and_drop_islands(open_ring, mk.MaskCleaning())[20:30, 20:30].any()
    only_small = mk.fill_holes_and_drop_islands(mask, mk.MaskCleaning(fill_holes_px=100, drop_islands_px=10))
    assert not only_small[20:30, 20:30].any()  # a hole larger than fill_holes_px stays
    dilated = mk.clean_mask(view, None, mk.MaskCleaning(fill_holes_px=0, drop_islands_px=0, dilate_px=2))
    assert dilated[8, 20] and not dilated[5, 5] and not dilated[20, 20]
    assert mk.MaskCleaning().sizes(120, 160) == (120 * 160, 19, 1)
    assert mk.MaskCleaning().sizes(1080, 1920) == (1080 * 1920, 2074, 10)


def _disc_scene(size=(90, 120), centre=(45, 60), radius=20, seed=0):
    """A blue disc on a noisy brown and red background, and the disc's exact pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: size[0], : size[1]]
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    image = np.where((rows // 6 + cols // 10) % 2 == 0, 1, 0)[..., None] * np.array([150, 60, 40]) + \
        np.array([90, 70, 40]) + rng.normal(0, 12, size=(*size, 3))
    image[disc] = np.array([40, 80, 210]) + rng.normal(0, 10, size=(disc.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), disc


def test_chromaticity_keeps_hue_apart_from_shading():
    lit, shaded = np.array([[[60, 100, 240]]], np.uint8), np.array([[[15, 25, 60]]], np.uint8)  # one blue, 4x darker
    dark_brown = np.array([[[45, 30, 20]]], np.uint8)
    lit_c, shaded_c, brown_c = (mk.chromaticity(c).astype(float)[0, 0] for c in (lit, shaded, dark_brown))
    assert np.abs(lit_c[:2] - shaded_c[:2]).max() <= 3  # shading changes the brightness channel only
    assert lit_c[2] > 3 * shaded_c[2]
    rgb_gap = np.linalg.norm(shaded.astype(float) - dark_brown.astype(float))
    assert np.linalg.norm(shaded_c - brown_c) > 1.5 * rgb_gap  # dark shades of two hues: further apart than in RGB
    black = mk.chromaticity(np.zeros((2, 2, 3), np.uint8))
    assert black.dtype == np.uint8 and black.shape == (2, 2, 3) and (black[..., :2] == 85).all()


@pytest.mark.parametrize("colours", ["chromaticity", "rgb"])
def test_edges_refined_on_the_image_remove_a_depth_fringe_and_recover_a_missed_rim(colours):
    image, disc = _disc_scene()
    rows, cols = np.mgrid[:90, :120]
    through = (np.abs(rows - 45) <= 32) & (np.abs(cols - 60) <= 32)  # the box's projection
    fringe = disc | ((rows - 45) ** 2 + (cols - 56) ** 2 <= 24**2)  # 4 px of background beside the disc
    shrunk = (rows - 45) ** 2 + (cols - 60) ** 2 <= 17**2  # its rim missed
    for depth_mask in (fringe, shrunk):
        before = (depth_mask ^ disc).sum()
        refined = mk.refine_edges(image, depth_mask, through, colours=colours)
        assert (refined ^ disc).sum() < 0.25 * before
        assert not (refined & ~through).any()  # never outside the box's projection
    cleaning = mk.MaskCleaning(dilate_px=0, edge_colours=colours)
    view = mk.ViewBoxMask(inside=fringe, through=through)
    assert np.array_equal(mk.clean_mask(view, None, cleaning), fringe)  # no image: the depth test as it is
    assert np.array_equal(mk.clean_mask(view, image, mk.MaskCleaning(dilate_px=0, refine_edges=False)), fringe)
    assert (mk.clean_mask(view, image, cleaning) ^ disc).sum() < 0.25 * (fringe ^ disc).sum()


def test_report_names_the_views_the_data_checks_refuse():
    assert mk.report_fractions(["a.png", "b.png", "c.png"], [0.2, 0.97, mk.MAX_MASK_FRACTION]) == ["b.png", "c.png"]


def test_preview_overlays_the_masks_on_a_few_views(tmp_path):
    images, masks = [], []
    for k in range(8):
        path = tmp_path / f"v{k}.png"
        Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(path)
        mask = np.zeros((30, 40), bool)
        mask[10:20, 10 + k : 20 + k] = True
        images.append(path)
        masks.append(mask)
    mk.write_preview(tmp_path / "preview.png", images, masks, [p.name for p in images], tile_width=80)
    grid = np.asarray(Image.open(tmp_path / "preview.png"))
    assert grid.shape == (2 * 60, 3 * 80, 3)  # 6 of 8 views, 3 per row, tiles scaled to 80 px wide
    red = (grid[..., 0] > 150) & (grid[..., 1] < 80)
    assert red.sum() > 6 * 100  # the masks show in every tile
