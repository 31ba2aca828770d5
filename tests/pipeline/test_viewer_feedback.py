"""The viewer shows the refreshed inpainted images on the training cameras after a dataset update."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import numpy as np
import torch
import viser

from nerfstudio.cameras.cameras import Cameras

from mald_nerfstudio.pipeline.viewer_feedback import refresh_camera_thumbnails


class _Dataset:
    def __init__(self, images):
        self.images = images
        n, h, w = images.shape[:3]
        self.cameras = Cameras(camera_to_worlds=torch.eye(4)[:3].expand(n, 3, 4), fx=50.0, fy=50.0,
                               cx=w / 2, cy=h / 2, width=w, height=h)

    def get_numpy_image(self, index):
        return self.images[index]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refreshed_frustums_carry_the_new_image_pose_and_click_handlers():
    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    try:
        images = np.zeros((3, 24, 32, 3), np.uint8)
        handles = {}
        clicks = []
        for index in (0, 2):  # the viewer draws a subset of the cameras
            handle = server.scene.add_camera_frustum(
                f"/cameras/camera_{index:05d}", fov=1.0, aspect=1.33, scale=0.1, image=images[index],
                wxyz=(1.0, 0.0, 0.0, 0.0), position=(float(index), 0.0, 0.0))
            handle.on_click(lambda event, i=index: clicks.append(i))
            handles[index] = handle
        viewer_state = SimpleNamespace(camera_handles=handles, viser_server=server,
                                       config=SimpleNamespace(camera_frustum_scale=0.1))
        old = dict(handles)
        images[:, 8:16, 8:16] = 255  # "inpainted" content
        redrawn = refresh_camera_thumbnails(viewer_state, _Dataset(images), [0, 1, 2])
        assert redrawn == 2  # camera 1 is not drawn
        for index in (0, 2):
            new = handles[index]
            assert new is not old[index]
            assert np.allclose(new.position, (float(index), 0.0, 0.0))
            assert len(new._impl.click_cb) == 1
    finally:
        server.stop()


def test_thumbnails_tint_only_the_unseen_part_of_the_masks():
    from mald_nerfstudio.pipeline.viewer_feedback import UNSEEN_TINT, tint_unseen

    image = torch.full((4, 5, 3), 100, dtype=torch.uint8)
    unseen = torch.zeros((4, 5), dtype=torch.bool)
    unseen[1:3, 2:4] = True
    tinted = tint_unseen(image, unseen)
    assert torch.equal(tinted[~unseen], image[~unseen])
    expected = torch.tensor([round(0.6 * 100 + 0.4 * c) for c in UNSEEN_TINT], dtype=torch.uint8)
    assert (tinted[unseen] == expected).all()
