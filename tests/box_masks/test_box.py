"""The box: nerfstudio's crop box semantics, the ray-box test, and the three ways the viewer gives a box."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from mald_nerfstudio.box_masks.box import Box, format_box, read_viewer_box, validate_box
from mald_nerfstudio.errors import MaldInputError


def test_box_validation():
    with pytest.raises(MaldInputError, match="zero or negative"):
        validate_box(Box(center=(0, 0, 0), size=(1, 0, 1)))
    with pytest.raises(MaldInputError, match="zero or negative"):
        validate_box(Box(center=(0, 0, 0), size=(1, -2, 1)))
    with pytest.raises(MaldInputError, match="not finite"):
        validate_box(Box(center=(0, math.nan, 0), size=(1, 1, 1)))
    validate_box(Box(center=(0, 0, 0), size=(1, 1, 1)))


def test_contains_matches_nerfstudio_oriented_box():
    from nerfstudio.data.scene_box import OrientedBox

    gen = torch.Generator().manual_seed(0)
    points = torch.rand(4000, 3, generator=gen) * 4 - 2
    for rotation in [(0.0, 0.0, 0.0), (0.3, -0.7, 1.2), (1.76, 0.0, -2.5)]:
        box = Box(center=(0.2, -0.1, 0.3), size=(1.0, 2.0, 0.6), rotation=rotation)
        theirs = OrientedBox.from_params(box.center, box.rotation, box.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OrientedBox.within copy-constructs tensors
            reference = theirs.within(points.double())
        assert torch.equal(box.contains(points), reference)
        assert np.allclose(box.rotation_matrix(), theirs.R.numpy())


def test_a_ray_hits_the_box_exactly_when_a_point_of_it_in_front_of_the_origin_lies_inside():
    gen = torch.Generator().manual_seed(1)
    box = Box(center=(0.3, -0.2, 0.1), size=(0.8, 0.4, 0.6), rotation=(0.4, -0.3, 0.9))
    origins = torch.rand(3000, 3, generator=gen) * 4 - 2
    directions = torch.nn.functional.normalize(torch.randn(3000, 3, generator=gen), dim=-1)
    directions[:20] = torch.tensor([0.0, 0.0, 1.0])  # axis-aligned rays: zero components in the slab test
    t = torch.linspace(0, 6, 6001)
    samples = origins[:, None] + directions[:, None] * t[None, :, None]
    brute = box.contains(samples).any(dim=1)
    hit = box.hit_by(origins, directions)
    assert brute.any() and (~brute).any()
    assert torch.equal(hit, brute)
    inside = box.contains(origins)
    assert hit[inside].all()  # a ray that starts inside always hits


def test_the_export_panels_line_gives_the_box():
    # what nerfstudio 1.1.5's export panel prints (viewer/export_panel.py: get_crop_string)
    printed = ("ns-export pointcloud --load-config outputs/x/config.yml --output-dir exports/pcd/ --num-points 1000000 "
               "--remove-outliers True --normal-method open3d --save-world-frame False "
               "--obb_center 0.1000000000 -0.2000000000 0.3000000000 --obb_rotation 0.0000000000 0.5000000000 "
               "-1.0000000000 --obb_scale 0.4000000000 0.5000000000 0.6000000000")
    box = read_viewer_box(printed)
    assert box.center == pytest.approx((0.1, -0.2, 0.3))
    assert box.rotation == pytest.approx((0.0, 0.5, -1.0))
    assert box.size == pytest.approx((0.4, 0.5, 0.6))
    box = read_viewer_box("--obb-scale 1 2 3 --obb-center 0 0 0 --obb_rotation=0.1 0.2 0.3")
    assert box.size == (1.0, 2.0, 3.0) and box.rotation == pytest.approx((0.1, 0.2, 0.3))
    with pytest.raises(MaldInputError, match="lacks --obb_scale"):
        read_viewer_box("--obb_center 0 0 0 --obb_rotation 0 0 0")
    with pytest.raises(MaldInputError, match="three numbers"):
        read_viewer_box("--obb_center 0 0 --obb_rotation 0 0 0 --obb_scale 1 1 1")


def test_a_camera_path_saved_with_the_crop_box_gives_the_box(tmp_path):
    # the "crop" entry nerfstudio 1.1.5's render panel saves (viewer/render_panel.py), read back by ns-render
    from nerfstudio.scripts.render import get_crop_from_json

    saved = {"camera_path": [], "crop": {"crop_center": [0.1, -0.2, 0.3], "crop_scale": [0.4, 0.5, 0.6],
                                         "crop_rot": [0.2, -0.1, 1.0], "crop_bg_color": {"r": 0, "g": 0, "b": 0}}}
    path = tmp_path / "camera_paths" / "box.json"
    path.parent.mkdir()
    path.write_text(json.dumps(saved))
    box = read_viewer_box(str(path))
    theirs = get_crop_from_json(saved).obb
    assert np.allclose(box.rotation_matrix(), theirs.R.numpy(), atol=1e-6)
    assert np.allclose(box.center, theirs.T.numpy()) and np.allclose(box.size, theirs.S.numpy())
    del saved["crop"]
    path.write_text(json.dumps(saved))
    with pytest.raises(MaldInputError, match="holds no crop box"):
        read_viewer_box(str(path))
    with pytest.raises(MaldInputError, match="does not exist"):
        read_viewer_box(str(tmp_path / "missing.json"))


def test_format_box_gives_flags_that_read_back():
    box = Box(center=(0.125, -2.0, 3.5), size=(1.0, 0.25, 2.0), rotation=(0.0, 0.5, -1.0))
    words = format_box(box).split()
    assert words[0] == "--box" and words[7] == "--rotation"
    assert [float(w) for w in words[1:7]] == [0.125, -2.0, 3.5, 1.0, 0.25, 2.0]
    assert [float(w) for w in words[8:]] == [0.0, 0.5, -1.0]
