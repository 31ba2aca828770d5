"""The built-in demo scene: a procedural forward-facing capture with an object to remove and exact ground truth.

``mald-nerf-demo-scene OUT`` (or :func:`generate_demo_scene`) ray-casts a small room corner in numpy: a wooden
plank floor, a brick back wall, a checkered box in the background, and the object to remove, a blue ball
standing on the floor in front of the wall corner. Cameras sit on a jittered disc and all look at the ball,
like an LLFF / SPIn-NeRF hand-held capture. Training views show the ball and come with its mask; test views are
taken from other positions on the same disc with the ball absent, so they are the exact ground truth of the
inpainted scene. The output uses the SPIn-NeRF layout, so the project's parser and evaluation treat the demo
and real captures alike:

- ``OUT/images/imageNNN.png``: all views (RGB, 8 bit); in sorted file-name order the first
  ``num_test_views`` are the object-free test views, the rest the training views with the object.
- ``OUT/images/label/imageNNN.png``: 8-bit masks, values 0/1 (1 = object / inpaint), for every view: the
  object's silhouette dilated by ``mask_dilation_px``; in test views where the object would be.
- ``OUT/images_2/`` (and ``images_2/label/``): the same at half resolution (box-filtered images, max-pooled
  masks), for ``--downscale-factor 2``.
- ``OUT/poses_bounds.npy``: LLFF poses, float64 ``[N, 17]`` in the same order: a row-major 3x5 matrix
  ``[down | right | back | centre | (height, width, focal)]`` (camera axes as world-space columns, OpenGL's
  camera is ``[right, up, back] = [col1, -col0, col2]``; hwf for ``images/``), then near and far depth bounds.
- ``OUT/README.txt``: the parameters used and the observed fraction of the hole.
- ``OUT/mald_scene.json``: ``{"num_test_views": K, "observed_fraction_label_masks": F,
  "observed_fraction_downscale": 2, "scene": {...}}``; ``mald-data`` reads K. F is the share of the test views'
  masked pixels in ``images_2/`` whose background point (floor, wall or box, the ball absent) at least one training
  view sees, inside its image, unoccluded and outside its own mask (:func:`observe_hole`, exact geometry), with the
  label masks as written. Training reads the masks through the data parser, which dilates them further (SPIn-NeRF
  layout: 5x5 kernel, 5 iterations unless ``--mask-dilation-iterations`` says otherwise), so the hole a run fills is
  larger and less of it is observed: the benchmark computes the fraction for the masks its runs read from
  ``"scene"``, the generator's parameters (:func:`scene_config_of`), with ``observe_hole(...,
  mask_dilation_iterations=N)``.

Shading is Lambertian (a point light plus ambient). By default nothing casts a shadow, and the object changes no
pixel outside its own silhouette: outside the masks a training image equals the object-free render of its pose
exactly. With ``--cast-shadow`` the ball shades the floor, wall and box points from which it hides the light (they
get the ambient term only), as a real object's cast shadow that a mask hugging the object leaves behind;
:meth:`DemoScene.shadow_coverage` gives those pixels exactly.
Pixel ``(row, col)`` covers ``[col, col + 1] x [row, row + 1]`` in image coordinates with the principal point
at ``(width / 2, height / 2)``, as in nerfstudio's cameras.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence, Tuple, Type

import cv2
import numpy as np
import tyro
from nerfstudio.configs.base_config import InstantiateConfig
from PIL import Image
from rich.console import Console
from rich.progress import track

from mald_nerfstudio.data.masks import dilate
from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE
from mald_nerfstudio.data.procedural_texture import ValueNoise, brick_wall, painted_checker, plank_floor
from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig
from mald_nerfstudio.errors import MaldInputError, install_run_hooks

WALL_Z = -1.6
"""The back wall is the plane z = WALL_Z (facing +z); the floor is the plane y = 0 (facing +y)."""
PROP_BOX = (np.array([-1.5, 0.0, -1.35]), np.array([-0.88, 0.62, -0.78]))
"""Axis-aligned background box (min corner, max corner), to the left behind the object."""
OBJECT_RADIUS = 0.4
"""Radius of the ball to remove; it stands on the floor."""
LOOK_AT = np.array([0.0, 0.32, -0.45])
"""Point every camera looks at (near the object's centre)."""
DISC_CENTRE = np.array([0.0, 0.95, 3.0])
"""Centre of the disc the cameras sit on; the disc is perpendicular to the mean viewing direction."""
LIGHT_POSITION = (-1.2, 2.6, 2.2)
"""Default point light (Lambertian shading); ``--light-position`` moves it."""
AMBIENT, DIFFUSE, LIGHT_FALLOFF = 0.3, 1.45, 4.0
"""Shading = albedo * (AMBIENT + DIFFUSE * max(0, n.l) / (1 + (distance / LIGHT_FALLOFF)^2))."""

_NAME = re.compile(r"image\d+\.png")
PARSER_DILATION_KERNEL = SpinNerfDataParserConfig.mask_dilation_kernel
"""The data parser's default mask dilation kernel side (``--mask-dilation-kernel``, SPIn-NeRF's 5)."""


@dataclass
class DemoSceneConfig(InstantiateConfig):
    """Parameters of the procedural demo scene; ``setup()`` builds the :class:`DemoScene` renderer."""

    _target: tyro.conf.Suppress[Type] = field(default_factory=lambda: DemoScene)
    """Target class to instantiate."""
    seed: int = 0
    """Random seed: textures, camera jitter, object placement and colour. The same seed gives identical files."""
    num_train_views: int = 24
    """Training views (with the object and its mask)."""
    num_test_views: int = 8
    """Object-free ground-truth test views, from other positions on the same camera disc; written first."""
    width: int = 320
    """Image width in pixels of images/ (even, so images_2/ is exact)."""
    height: int = 240
    """Image height in pixels of images/ (even, so images_2/ is exact)."""
    horizontal_fov_degrees: float = 55.0
    """Horizontal field of view of every camera."""
    camera_disc_radius: float = 0.3
    """Radius of the camera disc in scene units (larger: more of the hole seen; about 1.0 reaches the floor)."""
    supersampling: int = 2
    """Anti-aliasing: rays per pixel along each axis (2 means 2x2 rays per pixel)."""
    mask_dilation_px: int = 2
    """Masks are the object's silhouette dilated by this many pixels (full resolution)."""
    object_radius: float = OBJECT_RADIUS
    """Radius of the ball to remove (larger: larger holes, more of them seen by no training view)."""
    object_colour: Optional[Tuple[float, float, float]] = None
    """Albedo of the ball (RGB in [0, 1]); None: the seed's blue."""
    light_position: Tuple[float, float, float] = LIGHT_POSITION
    """The point light (world: y up, floor y = 0, wall z = -1.6, cameras near z = 3)."""
    cast_shadow: bool = False
    """The ball casts a hard shadow (ambient light only where it hides the light); test views have no ball, no shadow."""


@dataclass
class ViewRender:
    """One rendered view."""

    rgb: np.ndarray
    """Colour, float64 [height, width, 3] in [0, 1], the supersamples averaged."""
    object_coverage: np.ndarray
    """Fraction of each pixel's rays whose nearest surface is the object, float64 [height, width] (drawn or not)."""
    near: float
    """Depth bound: 0.9 x the smallest depth (along the optical axis) of any surface hit, object included."""
    far: float
    """Depth bound: 1.1 x the largest depth of any surface hit."""


def quantize(rgb: np.ndarray) -> np.ndarray:
    """Float colour in [0, 1] to 8-bit, as written to disk."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def dilated_mask(object_coverage: np.ndarray, dilation_px: int) -> np.ndarray:
    """0/1 uint8 mask: every pixel the object touches at all, grown by ``dilation_px`` (elliptical kernel)."""
    mask = (object_coverage > 0).astype(np.uint8)
    if dilation_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation_px + 1, 2 * dilation_px + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def opengl_to_llff(camera_to_world: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world [3, 4] (columns right, up, back, centre) to LLFF's column order [down, right, back,
    centre]; the inverse of the NeRF LLFF loader's ``[col1, -col0, col2]``."""
    right, up, back, centre = camera_to_world.T
    return np.stack([-up, right, back, centre], axis=1)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class DemoScene:
    """The procedural scene and its cameras; renders any pose by exact ray casting (numpy, vectorised)."""

    def __init__(self, config: DemoSceneConfig):
        _validate(config)
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.floor_noise = ValueNoise(rng)
        self.wall_noise = ValueNoise(rng)
        self.prop_noise = ValueNoise(rng)
        self.object_radius = config.object_radius
        """Radius of the ball to remove."""
        self.object_centre = np.array(
            [0.15 + rng.uniform(-0.1, 0.1), config.object_radius, -0.45 + rng.uniform(-0.1, 0.1)]
        )
        """Centre of the ball to remove (world, OpenGL axes: y up)."""
        self.object_albedo = np.array([0.16, 0.36, 0.88]) * rng.uniform(0.85, 1.1)
        """Colour of the ball."""
        if config.object_colour is not None:  # after the draw above, so the rest of the scene stays the seed's
            self.object_albedo = np.asarray(config.object_colour, dtype=np.float64)
        self.focal = 0.5 * config.width / np.tan(np.deg2rad(config.horizontal_fov_degrees) / 2.0)
        """Focal length in pixels of images/."""
        self.camera_to_worlds = self._camera_poses(rng)
        """OpenGL camera-to-world matrices [N, 3, 4] in file order: test views first, then training views."""
        if np.any(self.camera_to_worlds[:, 1, 3] <= 0.0):
            raise MaldInputError(
                "Some cameras of the demo scene are below the floor (the camera disc reaches under y = 0, lowest "
                f"camera at y = {self.camera_to_worlds[:, 1, 3].min():.2f}); their views would be meaningless",
                fix="Use a smaller --camera-disc-radius (about 1.0 at most, depending on the seed)",
            )

    @property
    def num_views(self) -> int:
        """Test plus training views."""
        return self.config.num_test_views + self.config.num_train_views

    def is_test_view(self, index: int) -> bool:
        """Whether view ``index`` (file order) is an object-free test view."""
        return index < self.config.num_test_views

    def _camera_poses(self, rng: np.random.Generator) -> np.ndarray:
        """Jittered sunflower pattern on the disc; test views take evenly spread indices of the spiral, so they
        sit between the training views at all radii and angles."""
        n, k = self.num_views, self.config.num_test_views
        index = np.arange(n)
        radius = np.sqrt((index + 0.5) / n)
        angle = index * np.pi * (3.0 - np.sqrt(5.0)) + rng.uniform(0.0, 2.0 * np.pi)
        points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        points += rng.uniform(-0.15, 0.15, size=(n, 2)) / np.sqrt(n)
        forward = _normalize(LOOK_AT - DISC_CENTRE)
        disc_x = _normalize(np.cross(forward, [0.0, 1.0, 0.0]))
        disc_y = np.cross(disc_x, forward)
        centres = DISC_CENTRE + self.config.camera_disc_radius * (points[:, :1] * disc_x + points[:, 1:] * disc_y)
        test = np.unique(np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64))
        order = np.concatenate([test, np.setdiff1d(index, test)])
        poses = []
        for centre in centres[order]:
            back = _normalize(centre - LOOK_AT)
            right = _normalize(np.cross([0.0, 1.0, 0.0], back))
            up = np.cross(back, right)
            poses.append(np.stack([right, up, back, centre], axis=1))
        return np.stack(poses)

    def _pixel_rays(
        self, camera_to_world: np.ndarray, samples_per_axis: int, downscale: int = 1
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Origin [3] and unnormalised directions [n, 3] (the ray parameter t is the depth) of ``samples_per_axis``^2
        rays per pixel of the image downscaled ``downscale`` times, in row-major pixel order with each pixel's
        samples row-major inside it (reshape to [h, s, w, s])."""
        cfg = self.config
        s, d = samples_per_axis, downscale
        row_centres = (np.arange(cfg.height // d * s) + 0.5) / s
        col_centres = (np.arange(cfg.width // d * s) + 0.5) / s
        if d != 1:  # pixel coordinates of images/
            row_centres, col_centres = row_centres * d, col_centres * d
        rows, cols = np.meshgrid(row_centres, col_centres, indexing="ij")
        cam_dirs = np.stack(
            [(cols - cfg.width / 2.0) / self.focal, -(rows - cfg.height / 2.0) / self.focal, -np.ones_like(rows)],
            axis=-1,
        ).reshape(-1, 3)
        return camera_to_world[:, 3], cam_dirs @ camera_to_world[:, :3].T

    def render(self, camera_to_world: np.ndarray, include_object: bool = True) -> ViewRender:
        """Ray-cast one view (OpenGL camera-to-world [3, 4]) at ``supersampling``^2 rays per pixel."""
        cfg = self.config
        s = cfg.supersampling
        origin, dirs = self._pixel_rays(camera_to_world, s)
        t_scene, normal, material = self._intersect_background(origin, dirs)
        if not np.all(np.isfinite(t_scene)):
            raise MaldInputError(
                "Some camera rays of the demo scene leave the room (the field of view or the camera disc is too "
                "large)",
                fix="Use a smaller --horizontal-fov-degrees or --camera-disc-radius",
            )
        t_object = self._intersect_object(origin, dirs)
        on_object = t_object < t_scene
        points = origin + t_scene[:, None] * dirs
        shade = self._shading(points, normal)
        if include_object and cfg.cast_shadow:
            shade = np.where(self._in_shadow(points), AMBIENT, shade)
        rgb = self._albedo(points, normal, material) * shade[:, None]
        if include_object and on_object.any():
            hit = origin + t_object[on_object, None] * dirs[on_object]
            ball_normal = (hit - self.object_centre) / self.object_radius
            rgb[on_object] = self.object_albedo * self._shading(hit, ball_normal)[:, None]
        depth = np.where(on_object, t_object, t_scene)
        shape = (cfg.height, s, cfg.width, s)
        return ViewRender(
            rgb=rgb.reshape(*shape, 3).mean(axis=(1, 3)),
            object_coverage=on_object.reshape(shape).mean(axis=(1, 3)),
            near=float(0.9 * depth.min()),
            far=float(1.1 * t_scene.max()),
        )

    def object_coverage(self, camera_to_world: np.ndarray) -> np.ndarray:
        """``render(camera_to_world).object_coverage`` without the shading: the fraction of each pixel's rays whose
        nearest surface is the ball, float64 [height, width]."""
        cfg = self.config
        s = cfg.supersampling
        origin, dirs = self._pixel_rays(camera_to_world, s)
        on_object = self._intersect_object(origin, dirs) < self._intersect_background(origin, dirs)[0]
        return on_object.reshape(cfg.height, s, cfg.width, s).mean(axis=(1, 3))

    def shadow_coverage(self, camera_to_world: np.ndarray) -> np.ndarray:
        """The fraction of each pixel's rays whose nearest surface is floor, wall or box in the ball's cast shadow
        (zero everywhere without ``cast_shadow``), float64 [height, width]."""
        cfg = self.config
        s = cfg.supersampling
        origin, dirs = self._pixel_rays(camera_to_world, s)
        t_scene = self._intersect_background(origin, dirs)[0]
        shadowed = (self._intersect_object(origin, dirs) >= t_scene) & cfg.cast_shadow
        shadowed &= self._in_shadow(origin + t_scene[:, None] * dirs)
        return shadowed.reshape(cfg.height, s, cfg.width, s).mean(axis=(1, 3))

    def _in_shadow(self, points: np.ndarray) -> np.ndarray:
        """Whether the ball lies between each point [n, 3] and the light: bool [n]."""
        to_light = np.asarray(self.config.light_position, dtype=np.float64) - points  # t = 1 at the light
        oc = points - self.object_centre
        a = np.einsum("ij,ij->i", to_light, to_light)
        b = 2.0 * np.einsum("ij,ij->i", to_light, oc)
        c = np.einsum("ij,ij->i", oc, oc) - self.object_radius**2
        disc = b * b - 4.0 * a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
        return (disc >= 0) & (t > 0) & (t < 1)

    def mask(
        self,
        index: int,
        downscale: int = 1,
        mask_dilation_iterations: int = 0,
        mask_dilation_kernel: int = PARSER_DILATION_KERNEL,
    ) -> np.ndarray:
        """View ``index``'s 0/1 uint8 mask as written: ``images/label/`` (downscale 1) or, max-pooled,
        ``images_2/label/`` (downscale 2); in a test view where the ball would be. With ``mask_dilation_iterations``
        above 0, the mask as the data parser reads it with ``--mask-dilation-iterations`` (and
        ``--mask-dilation-kernel``): the label at that resolution dilated by the parser's own function
        (:func:`mald_nerfstudio.data.masks.dilate`)."""
        mask = dilated_mask(self.object_coverage(self.camera_to_worlds[index]), self.config.mask_dilation_px)
        h, w, d = self.config.height, self.config.width, downscale
        mask = mask if d == 1 else mask.reshape(h // d, d, w // d, d).max(axis=(1, 3))
        return dilate(mask, mask_dilation_kernel, mask_dilation_iterations).astype(np.uint8)

    def background_points(self, camera_to_world: np.ndarray, downscale: int = 1) -> np.ndarray:
        """The first floor, wall or box point (the ball absent) under each pixel centre of the image downscaled
        ``downscale`` times: [height / downscale, width / downscale, 3]."""
        origin, dirs = self._pixel_rays(camera_to_world, 1, downscale)
        t = self._intersect_background(origin, dirs)[0]
        return (origin + t[:, None] * dirs).reshape(self.config.height // downscale, self.config.width // downscale, 3)

    def seen_from(self, points: np.ndarray, index: int, mask: np.ndarray) -> np.ndarray:
        """Whether view ``index`` observes each surface point of ``points`` [n, 3]: the point lies in front of the
        camera and projects inside its image, nothing hides it (the first hit of the ray from the camera to the
        point, ball and background surfaces alike, is no nearer than the point's own depth less a relative
        OCCLUSION_TOLERANCE), and the pixel it lands on is outside ``mask``, the view's mask at any resolution
        (e.g. :meth:`mask`). Returns bool [n]."""
        pose = self.camera_to_worlds[index]
        origin = pose[:, 3]
        dirs = points - origin  # t = 1 at the point itself
        right, up, back = (dirs @ pose[:, :3]).T
        depth = -back
        h, w = mask.shape
        scale = w / self.config.width  # mask pixels per images/ pixel
        with np.errstate(divide="ignore", invalid="ignore"):
            col = (self.config.width / 2.0 + self.focal * right / depth) * scale
            row = (self.config.height / 2.0 - self.focal * up / depth) * scale
        inside = (depth > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        first_hit = np.minimum(self._intersect_background(origin, dirs)[0], self._intersect_object(origin, dirs))
        unoccluded = first_hit >= 1.0 - OCCLUSION_TOLERANCE
        rows, cols = np.where(inside, row, 0).astype(np.int64), np.where(inside, col, 0).astype(np.int64)
        return inside & unoccluded & (mask[rows, cols] == 0)

    def object_box(self) -> Tuple[np.ndarray, np.ndarray]:
        """(centre, size) of an axis-aligned box around the ball as a user would fit one: from just above the
        floor to 0.3 radii above the ball, 0.3 radii to each side, and reaching further into the empty space
        behind the ball (0.6 radii) than in front of it (0.5 radii)."""
        c, r = self.object_centre, self.object_radius
        lo = np.array([c[0] - 1.3 * r, 0.03, c[2] - 1.6 * r])
        hi = np.array([c[0] + 1.3 * r, c[1] + 1.3 * r, c[2] + 1.5 * r])
        return (lo + hi) / 2, hi - lo

    def surface_points(self, camera_to_world: np.ndarray, stride: int) -> np.ndarray:
        """The first surface (object included) under every ``stride``-th pixel centre of a view: points [n, 3], as
        the sparse points a structure-from-motion run finds on what a camera sees."""
        cfg = self.config
        rows, cols = np.meshgrid(np.arange(stride / 2, cfg.height, stride), np.arange(stride / 2, cfg.width, stride),
                                 indexing="ij")
        cam_dirs = np.stack([(cols - cfg.width / 2.0) / self.focal, -(rows - cfg.height / 2.0) / self.focal,
                             -np.ones_like(rows)], axis=-1).reshape(-1, 3)
        origin = camera_to_world[:, 3]
        dirs = cam_dirs @ camera_to_world[:, :3].T
        t_scene, _, _ = self._intersect_background(origin, dirs)
        t = np.minimum(t_scene, self._intersect_object(origin, dirs))
        return origin + t[:, None] * dirs

    @staticmethod
    def _intersect_background(origin: np.ndarray, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest hit of floor, wall and box: depth [n] (inf on a miss), normal [n, 3], material id [n]."""
        n = len(dirs)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(dirs[:, 1] < 0, -origin[1] / dirs[:, 1], np.inf)
            t_wall = np.where(dirs[:, 2] < 0, (WALL_Z - origin[2]) / dirs[:, 2], np.inf)
            lo, hi = PROP_BOX
            t_lo, t_hi = (lo - origin) / dirs, (hi - origin) / dirs
            t_near_axes = np.minimum(t_lo, t_hi)
            t_enter, t_exit = t_near_axes.max(axis=1), np.maximum(t_lo, t_hi).min(axis=1)
        t_box = np.where((t_enter <= t_exit) & (t_enter > 0), t_enter, np.inf)
        candidates = np.stack([t_floor, t_wall, t_box], axis=1)
        material = candidates.argmin(axis=1)
        t = candidates[np.arange(n), material]
        normal = np.zeros((n, 3))
        normal[material == 0] = [0.0, 1.0, 0.0]
        normal[material == 1] = [0.0, 0.0, 1.0]
        box = material == 2
        box_axis = t_near_axes[box].argmax(axis=1)
        normal[np.flatnonzero(box), box_axis] = -np.sign(dirs[box, box_axis])
        return t, normal, material

    def _intersect_object(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Depth of the first hit of the ball along each ray; inf on a miss."""
        oc = origin - self.object_centre
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = 2.0 * dirs @ oc
        c = oc @ oc - self.object_radius**2
        disc = b * b - 4.0 * a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        t = (-b - root) / (2.0 * a)
        return np.where((disc >= 0) & (t > 0), t, np.inf)

    def _albedo(self, points: np.ndarray, normals: np.ndarray, material: np.ndarray) -> np.ndarray:
        """Texture colour of floor (0), wall (1) and box (2) points."""
        albedo = np.zeros_like(points)
        floor, wall, box = material == 0, material == 1, material == 2
        albedo[floor] = plank_floor(self.floor_noise, points[floor, 0], points[floor, 2])
        albedo[wall] = brick_wall(self.wall_noise, points[wall, 0], points[wall, 1])
        # each box face is textured by the two world coordinates that vary across it
        p, facing = points[box], np.abs(normals[box]).argmax(axis=1)
        in_plane = np.array([[2, 1], [0, 2], [0, 1]])[facing]
        a, b = np.take_along_axis(p, in_plane, axis=1).T
        albedo[box] = painted_checker(self.prop_noise, a, b)
        return albedo

    def _shading(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Lambertian point light with distance falloff, plus ambient (shadows: :meth:`render`)."""
        to_light = np.asarray(self.config.light_position, dtype=np.float64) - points
        distance = np.linalg.norm(to_light, axis=1)
        cosine = np.maximum(np.einsum("ij,ij->i", normals, to_light) / distance, 0.0)
        return AMBIENT + DIFFUSE * cosine / (1.0 + (distance / LIGHT_FALLOFF) ** 2)


OCCLUSION_TOLERANCE = 1e-4
"""Visibility test of :meth:`DemoScene.seen_from`: a point counts as unoccluded when the first hit along the ray to
it lies no nearer than (1 - OCCLUSION_TOLERANCE) x its depth (the geometry is exact, so this only absorbs rounding)."""
OBSERVED_FRACTION_DOWNSCALE = 2
"""The observed fraction written with a scene is measured on images_2/, the resolution of the CPU benchmark
(``--downscale-factor 2``)."""


@dataclass
class HoleObservation:
    """Which pixels of some views' masks show background that another training view observes."""

    views: np.ndarray
    """The views (file-order indices, int64 [V]): test views (observe_hole) or training views."""
    masks: np.ndarray
    """Their masks (bool [V, h, w] at the chosen downscale, with the chosen parser dilation)."""
    observed: np.ndarray
    """Masked pixels whose background another training view sees unoccluded outside its mask (same shape)."""

    @property
    def unseen(self) -> np.ndarray:
        """Masked pixels no other training view observes: the exact unseen masks (bool [V, h, w])."""
        return self.masks & ~self.observed

    @property
    def fraction(self) -> float:
        """Observed share of all the views' masked pixels (NaN when no view has a mask)."""
        total = int(self.masks.sum())
        return float(self.observed.sum()) / total if total else float("nan")

    @property
    def per_view(self) -> np.ndarray:
        """Observed share of each view's masked pixels, float64 [V]."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.observed.sum(axis=(1, 2)) / self.masks.sum(axis=(1, 2))


def observe_views(
    scene: DemoScene,
    views: Sequence[int],
    downscale: int = OBSERVED_FRACTION_DOWNSCALE,
    mask_dilation_iterations: int = 0,
    mask_dilation_kernel: int = PARSER_DILATION_KERNEL,
) -> HoleObservation:
    """Which masked pixels of ``views`` (file-order indices, test or training views) the training views observe,
    from the generator's exact geometry.

    Masks are read at ``downscale`` (1: images/, 2: images_2/) and dilated as the data parser dilates them with
    ``--mask-dilation-iterations mask_dilation_iterations`` (0: the labels as written; see :meth:`DemoScene.mask`).
    For each masked pixel, one ray through the pixel centre with the ball absent gives the background point there
    (floor, wall or box). The pixel is *observed* when at least one training view other than the view itself sees
    that point (:meth:`DemoScene.seen_from`): inside its image, unoccluded by the ball or by another background
    surface, and outside that view's mask (same downscale and dilation)."""
    k = scene.config.num_test_views
    train = range(k, scene.num_views)
    train_masks = {index: scene.mask(index, downscale, mask_dilation_iterations, mask_dilation_kernel)
                   for index in train}
    masks, observed = [], []
    for index in views:
        index = int(index)
        mask = train_masks[index] if index in train_masks else scene.mask(
            index, downscale, mask_dilation_iterations, mask_dilation_kernel)
        mask = mask.astype(bool)
        points = scene.background_points(scene.camera_to_worlds[index], downscale)[mask]
        seen = np.zeros(len(points), dtype=bool)
        for train_index in train:
            if train_index == index:
                continue
            unknown = ~seen
            seen[unknown] = scene.seen_from(points[unknown], train_index, train_masks[train_index])
        view_observed = np.zeros_like(mask)
        view_observed[mask] = seen
        masks.append(mask)
        observed.append(view_observed)
    h, w = scene.config.height // downscale, scene.config.width // downscale
    return HoleObservation(
        views=np.asarray([int(v) for v in views], dtype=np.int64),
        masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
        observed=np.stack(observed) if observed else np.zeros((0, h, w), dtype=bool),
    )


def observe_hole(
    scene: DemoScene,
    downscale: int = OBSERVED_FRACTION_DOWNSCALE,
    mask_dilation_iterations: int = 0,
    mask_dilation_kernel: int = PARSER_DILATION_KERNEL,
) -> HoleObservation:
    """How much of the hole the training views observe: :func:`observe_views` of the test views. The masks are the
    labels as written at ``downscale`` (1 for images/, 2 for images_2/), dilated as the data parser dilates them
    with ``mask_dilation_iterations`` above 0 (the masks a run reads: what the benchmark reports)."""
    return observe_views(scene, range(scene.config.num_test_views), downscale, mask_dilation_iterations,
                         mask_dilation_kernel)


def observe_training_views(
    scene: DemoScene,
    downscale: int = OBSERVED_FRACTION_DOWNSCALE,
    mask_dilation_iterations: int = 0,
    mask_dilation_kernel: int = PARSER_DILATION_KERNEL,
) -> HoleObservation:
    """The exact seen / unseen parts of the training views' masks (:func:`observe_views` of the training views; a
    view never counts as observing itself): ``.unseen`` is what a run's visibility test should find unseen."""
    return observe_views(scene, range(scene.config.num_test_views, scene.num_views), downscale,
                         mask_dilation_iterations, mask_dilation_kernel)


def scene_config_of(folder: Path) -> Optional[DemoSceneConfig]:
    """The generator's parameters of a demo scene folder (``"scene"`` in its mald_scene.json); None when the folder
    has none (not a generated scene, or generated before the parameters were written there)."""
    try:
        values = json.loads((Path(folder) / SCENE_INFO_FILE).read_text())["scene"]
        names = {f.name for f in fields(DemoSceneConfig) if not f.name.startswith("_")}
        values = {key: value for key, value in values.items() if key in names}
        for key in ("object_colour", "light_position"):
            if values.get(key) is not None:
                values[key] = tuple(float(c) for c in values[key])
        return DemoSceneConfig(**values)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _config_values(config: DemoSceneConfig) -> dict:
    """The parameters as JSON values (written to mald_scene.json)."""
    values = {f.name: getattr(config, f.name) for f in fields(config) if not f.name.startswith("_")}
    if values["object_colour"] is not None:
        values["object_colour"] = [float(c) for c in values["object_colour"]]
    values["light_position"] = [float(c) for c in values["light_position"]]
    return values


def _validate(config: DemoSceneConfig) -> None:
    """Reject parameters the scene cannot be built with (MaldInputError, one paragraph each)."""
    problems = []
    if config.num_train_views < 1 or config.num_test_views < 1:
        problems.append("--num-train-views and --num-test-views must each be at least 1")
    if config.width < 2 or config.height < 2 or config.width % 2 or config.height % 2:
        problems.append("--width and --height must be even and at least 2 (images_2/ halves them exactly)")
    if not 10.0 <= config.horizontal_fov_degrees <= 90.0:
        problems.append("--horizontal-fov-degrees must lie in [10, 90]")
    if not 0.0 < config.camera_disc_radius <= 1.5:
        problems.append("--camera-disc-radius must lie in (0, 1.5]")
    if not 0.05 <= config.object_radius <= 0.8:
        problems.append("--object-radius must lie in [0.05, 0.8] (the ball stands between the cameras and the wall)")
    if config.object_colour is not None and not all(0.0 <= c <= 1.0 for c in config.object_colour):
        problems.append("--object-colour must be three numbers in [0, 1]")
    light = np.asarray(config.light_position, dtype=np.float64)
    if not (light[1] > 0.0 and light[2] > WALL_Z):
        problems.append("--light-position must lie above the floor (y > 0) and in front of the wall (z > -1.6)")
    if config.supersampling < 1 or config.mask_dilation_px < 0:
        problems.append("--supersampling must be at least 1 and --mask-dilation-px at least 0")
    if problems:
        raise MaldInputError("Invalid demo scene parameters: " + "; ".join(problems), fix="Change them and rerun")


def _prepare_output(out_dir: Path, overwrite: bool, with_labels: bool = True) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``, then remove only files this generator
    writes (``image<digits>.png`` in the image and label folders, and the top-level files of either layout)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MaldInputError("The output path exists and is not a directory", out_dir, fix="Choose another path")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise MaldInputError(
                "The output directory is not empty; refusing to write the demo scene over existing files",
                out_dir,
                fix="Choose a new or empty directory, or pass --overwrite to replace the demo scene files there",
            )
        for sub in ("images", "images/label", "images_2", "images_2/label"):
            folder = out_dir / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file() and _NAME.fullmatch(path.name):
                        path.unlink()
        for name in ("poses_bounds.npy", SCENE_INFO_FILE, "transforms.json", "sparse_pc.ply", "README.txt"):
            if (out_dir / name).is_file():
                (out_dir / name).unlink()
    for sub in ("images/label", "images_2/label") if with_labels else ("images",):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _readme(
    config: DemoSceneConfig, scene: DemoScene, layout: str = "spinnerf", observed_fraction: Optional[float] = None
) -> str:
    """README.txt: layout summary, the hole's observed fraction (SPIn-NeRF layout) and every parameter (no paths or
    dates, so files stay reproducible)."""
    k, n = config.num_test_views, scene.num_views
    views = [
        f"images/: {n} views, {config.width}x{config.height}; in sorted order the first {k} are object-free test",
        f"views (exact ground truth), the last {config.num_train_views} training views with the object.",
    ]
    if layout == "nerfstudio":
        lines = ["MALD-NeRF demo capture, generated by mald-nerf-demo-scene (nerfstudio layout, as ns-process-data).",
                 *views,
                 "transforms.json: shared intrinsics, OpenGL camera-to-world per frame; the test views are marked",
                 '"object_free": true. sparse_pc.ply: surface points seen by the views with the object. No masks:',
                 "make them with mald-nerf-masks --data <this folder> --output-dir <new folder> and the ball's box:",
                 f"  {object_box_flags(scene)}", "", "parameters:"]
    else:
        lines = ["MALD-NeRF demo scene, generated by mald-nerf-demo-scene (SPIn-NeRF / LLFF layout).", *views,
                 "images/label/: masks (0/1, 1 = object to remove) for every view; images_2/: half resolution.",
                 "poses_bounds.npy: LLFF [N, 17], columns [down, right, back, centre, hwf] then near, far."]
        if observed_fraction is not None:
            lines += [f"observed fraction of the hole: {observed_fraction:.4f} (share of the test views' masked pixels",
                      "in images_2/ whose floor/wall/box point some training view sees unoccluded outside its mask;",
                      "label masks as written, before the data parser's dilation; also in mald_scene.json)."]
        lines += ["", "parameters:"]
    lines += [f"  {f.name}: {getattr(config, f.name)}" for f in fields(config) if not f.name.startswith("_")]
    return "\n".join(lines) + "\n"


def generate_demo_scene(
    out_dir: Path, config: Optional[DemoSceneConfig] = None, overwrite: bool = False, show_progress: bool = False
) -> Path:
    """Render the demo scene into ``out_dir`` (SPIn-NeRF layout, see the module docstring) and return it.

    Refuses a non-empty ``out_dir`` unless ``overwrite``. Deterministic: the same config gives identical files.
    """
    config = config if config is not None else DemoSceneConfig()
    scene: DemoScene = config.setup()
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    digits = max(3, len(str(scene.num_views - 1)))
    rows = []
    views = range(scene.num_views)
    for index in track(views, description="Rendering demo views") if show_progress else views:
        pose = scene.camera_to_worlds[index]
        view = scene.render(pose, include_object=not scene.is_test_view(index))
        mask = dilated_mask(view.object_coverage, config.mask_dilation_px)
        h, w = config.height, config.width
        half_rgb = view.rgb.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        half_mask = mask.reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))
        name = f"image{index:0{digits}d}.png"
        for folder, rgb, label in (("images", view.rgb, mask), ("images_2", half_rgb, half_mask)):
            Image.fromarray(quantize(rgb)).save(out_dir / folder / name)
            Image.fromarray(label).save(out_dir / folder / "label" / name)
        hwf = np.array([[config.height], [config.width], [scene.focal]], dtype=np.float64)
        llff = np.concatenate([opengl_to_llff(pose), hwf], axis=1)
        rows.append(np.concatenate([llff.ravel(), [view.near, view.far]]))
    np.save(out_dir / "poses_bounds.npy", np.stack(rows).astype(np.float64))
    observed = round(observe_hole(scene, OBSERVED_FRACTION_DOWNSCALE).fraction, 4)
    (out_dir / "README.txt").write_text(_readme(config, scene, observed_fraction=observed))
    # Tells mald-nerf's default parser how many leading views are object-free (SPIn-NeRF itself uses 40); the
    # benchmark computes the observed fraction for the masks its runs read from the parameters under "scene".
    info = {"num_test_views": config.num_test_views, "observed_fraction_label_masks": observed,
            "observed_fraction_downscale": OBSERVED_FRACTION_DOWNSCALE, "scene": _config_values(config)}
    (out_dir / SCENE_INFO_FILE).write_text(json.dumps(info) + "\n")
    return out_dir


POINT_STRIDE = 8
"""The nerfstudio layout's sparse points: one per POINT_STRIDE x POINT_STRIDE pixels of each view with the object."""


def generate_demo_capture(
    out_dir: Path, config: Optional[DemoSceneConfig] = None, overwrite: bool = False, show_progress: bool = False
) -> Path:
    """Render the demo scene into ``out_dir`` as a capture that ``ns-process-data`` could have left: images/,
    transforms.json (OpenGL camera-to-world matrices, shared pinhole intrinsics, the test views marked
    ``"object_free": true`` for evaluation) and sparse_pc.ply (surface points seen by the views with the object,
    ASCII as ns-process-data writes it); no masks, which is what ``mald-nerf-masks`` makes. Same views as
    :func:`generate_demo_scene`."""
    from plyfile import PlyData, PlyElement

    config = config if config is not None else DemoSceneConfig()
    scene: DemoScene = config.setup()
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite, with_labels=False)
    digits = max(3, len(str(scene.num_views - 1)))
    frames, points, colours = [], [], []
    views = range(scene.num_views)
    for index in track(views, description="Rendering demo views") if show_progress else views:
        pose = scene.camera_to_worlds[index]
        test_view = scene.is_test_view(index)
        view = scene.render(pose, include_object=not test_view)
        name = f"image{index:0{digits}d}.png"
        Image.fromarray(quantize(view.rgb)).save(out_dir / "images" / name)
        frame = {"file_path": f"images/{name}", "transform_matrix": np.vstack([pose, [0, 0, 0, 1]]).tolist()}
        if test_view:
            frame["object_free"] = True
        else:
            points.append(scene.surface_points(pose, POINT_STRIDE))
            rgb = quantize(view.rgb)[POINT_STRIDE // 2 :: POINT_STRIDE, POINT_STRIDE // 2 :: POINT_STRIDE]
            colours.append(rgb.reshape(-1, 3))
        frames.append(frame)
    meta = {"camera_model": "OPENCV", "fl_x": scene.focal, "fl_y": scene.focal, "cx": config.width / 2.0,
            "cy": config.height / 2.0, "w": config.width, "h": config.height, "k1": 0.0, "k2": 0.0, "p1": 0.0,
            "p2": 0.0, "ply_file_path": "sparse_pc.ply", "frames": frames}
    (out_dir / "transforms.json").write_text(json.dumps(meta, indent=2) + "\n")
    xyz, rgb = np.concatenate(points), np.concatenate(colours)
    vertices = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                         ("blue", "u1")])
    for k, key in enumerate("xyz"):
        vertices[key] = xyz[:, k]
    for k, key in enumerate(("red", "green", "blue")):
        vertices[key] = rgb[:, k]
    PlyData([PlyElement.describe(vertices, "vertex")], text=True).write(str(out_dir / "sparse_pc.ply"))
    (out_dir / "README.txt").write_text(_readme(config, scene, layout="nerfstudio"))
    return out_dir


def object_box_flags(scene: DemoScene) -> str:
    """The ball's box as mald-nerf-masks flags, in the capture's coordinates."""
    centre, size = scene.object_box()
    return "--box-frame capture --box " + " ".join(f"{v:.4f}" for v in (*centre, *size))


@dataclass
class GenerateDemoScene:
    """Write the procedural MALD-NeRF demo scene (a textured room corner with a ball to remove): object-free test
    views first, then training views with the object; SPIn-NeRF layout with masks and LLFF poses, or a nerfstudio
    capture without masks (--layout nerfstudio, for mald-nerf-masks)."""

    output_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Directory to write (created; must be empty unless --overwrite)."""
    scene: tyro.conf.OmitArgPrefixes[DemoSceneConfig] = field(default_factory=DemoSceneConfig)
    """Scene parameters."""
    overwrite: bool = False
    """Replace the demo scene files in a non-empty output directory (other files there are left alone)."""
    layout: Literal["spinnerf", "nerfstudio"] = "spinnerf"
    """spinnerf: images, masks, poses_bounds.npy; nerfstudio: transforms.json + sparse_pc.ply, no masks."""

    def main(self) -> None:
        """Generate the scene and print a summary."""
        start = time.perf_counter()
        generate = generate_demo_capture if self.layout == "nerfstudio" else generate_demo_scene
        out = generate(self.output_dir, self.scene, overwrite=self.overwrite, show_progress=True)
        cfg = self.scene
        what = "no masks" if self.layout == "nerfstudio" else "masks"
        Console().print(
            f"[bold green]Demo scene written to {out}[/bold green] ({self.layout} layout, {what}) in "
            f"{time.perf_counter() - start:.1f} s: {cfg.num_test_views} object-free test views (first in sorted "
            f"order) + {cfg.num_train_views} training views with the object, {cfg.width}x{cfg.height}, seed {cfg.seed}."
        )
        if self.layout == "spinnerf":
            observed = json.loads((out / SCENE_INFO_FILE).read_text())["observed_fraction_label_masks"]
            Console().print(
                f"Observed fraction of the hole: {100 * observed:.1f} % of the test views' masked pixels (images_2/, "
                "label masks as written, before the data parser's dilation) show floor, wall or box that some "
                "training view sees unoccluded outside its mask.",
                soft_wrap=True,
            )
        if self.layout == "nerfstudio":
            Console().print(f"Masks from the ball's box: mald-nerf-masks --data {out} --output-dir OUT "
                            f"{object_box_flags(cfg.setup())}", soft_wrap=True)


def entrypoint() -> None:
    """Command-line entry point ``mald-nerf-demo-scene``."""
    install_run_hooks()
    tyro.cli(GenerateDemoScene).main()


if __name__ == "__main__":
    entrypoint()
