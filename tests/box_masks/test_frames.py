"""The two frames a box can be given in: the reconstruction's (what nerfstudio's viewer shows) and the capture's."""

from __future__ import annotations

import json

import numpy as np

from mald_nerfstudio.box_masks import reconstruction as rc
from mald_nerfstudio.box_masks import scene as sc
from mald_nerfstudio.box_masks.box import Box
from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_capture
from tests.box_masks.test_command import box_around_ball

SMALL = DemoSceneConfig(num_train_views=4, num_test_views=1, width=32, height=24, supersampling=1)


def _same(a: Box, b: Box) -> None:
    assert np.allclose(a.center, b.center, atol=1e-6) and np.allclose(a.size, b.size, atol=1e-6)
    assert np.allclose(a.rotation_matrix(), b.rotation_matrix(), atol=1e-6)


def _ball_box_in_the_reconstructions_frame(tmp_path):
    """A small demo capture prepared in OUT, and the generator's ball box converted from capture coordinates."""
    capture = generate_demo_capture(tmp_path / "capture", SMALL)
    out = tmp_path / "out"
    read = sc.prepare_output(capture, out)
    centre, size = SMALL.setup().object_box()
    return capture, out, read, rc.box_from_capture_frame(Box(center=tuple(centre), size=tuple(size)), out, read)


def test_a_box_in_capture_coordinates_lands_where_the_viewer_shows_it(tmp_path):
    capture, out, read, converted = _ball_box_in_the_reconstructions_frame(tmp_path)
    scene = SMALL.setup()
    centre, size = scene.object_box()
    _same(converted, box_around_ball(scene, out, read))
    # ns-process-data records the COLMAP-to-file transform as applied_transform; the matrices in the file are
    # already in the file's frame, so a box in the file's coordinates must land in the same place
    meta = json.loads((capture / "transforms.json").read_text())
    meta["applied_transform"] = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
    (capture / "transforms.json").write_text(json.dumps(meta))
    out2 = tmp_path / "out2"
    read2 = sc.prepare_output(capture, out2)
    _same(rc.box_from_capture_frame(Box(center=tuple(centre), size=tuple(size)), out2, read2), converted)


def test_the_reconstructions_frame_puts_the_far_depths_near_one(tmp_path):
    """The reason for the scene's own scale: nerfstudio's camera-based one leaves this forward-facing scene more
    than ten units away, where nerfacto's contraction and proposal samples give it almost no resolution."""
    _capture, out, read, ours = _ball_box_in_the_reconstructions_frame(tmp_path)
    centre, size = SMALL.setup().object_box()
    camera = rc.reconstruction_dataparser(out, read).setup().get_dataparser_outputs("train").cameras
    distance = np.linalg.norm(np.asarray(ours.center) - camera.camera_to_worlds[:, :, 3].numpy().mean(axis=0))
    assert 0.3 < distance < 1.0
    read.scale_factor = None  # nerfstudio's auto scale: cameras in the unit cube
    theirs = rc.box_from_capture_frame(Box(center=tuple(centre), size=tuple(size)), out, read)
    assert np.linalg.norm(theirs.center) > 10 * np.linalg.norm(ours.center)


def test_settings_resolve_for_the_device():
    resolved = rc.ReconstructionSettings(device="cpu").resolved()
    assert (resolved.steps, resolved.rays_per_batch) == (1500, 1024)
    cuda = rc.ReconstructionSettings(device="cuda").resolved()
    assert (cuda.steps, cuda.rays_per_batch) == (5000, 4096)
    assert rc.ReconstructionSettings(steps=7).resolved().steps == 7
