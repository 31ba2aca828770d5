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
- ``OUT/README.txt``: the parameters used.
- ``OUT/mald_scene.json``: ``{"num_test_views": K}``, read by mald-nerf's default parser (``mald-data``).

Shading is Lambertian (a point light plus ambient) without shadows, and the object changes no pixel outside
its own silhouette: outside the masks a training image equals the object-free render of its pose exactly.
Pixel ``(row, col)`` covers ``[col, col + 1] x [row, row + 1]`` in image coordinates with the principal point
at ``(width / 2, height / 2)``, as in nerfstudio's cameras.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Optional, Tuple, Type

import cv2
import numpy as np
import tyro
from nerfstudio.configs.base_config import InstantiateConfig
from PIL import Image
from rich.console import Console
from rich.progress import track

from mald_nerfstudio.data.auto_dataparser import SCENE_INFO_FILE
from mald_nerfstudio.data.procedural_texture import ValueNoise, brick_wall, painted_checker, plank_floor
from mald_nerfstudio.errors import MaldInputError

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
LIGHT_POSITION = np.array([-1.2, 2.6, 2.2])
"""Point light (Lambertian shading, no shadows)."""
AMBIENT, DIFFUSE, LIGHT_FALLOFF = 0.3, 1.45, 4.0
"""Shading = albedo * (AMBIENT + DIFFUSE * max(0, n.l) / (1 + (distance / LIGHT_FALLOFF)^2))."""

_NAME = re.compile(r"image\d+\.png")


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
    """Radius of the disc the cameras sit on, in scene units (larger: more of the hole seen by other views)."""
    supersampling: int = 2
    """Anti-aliasing: rays per pixel along each axis (2 means 2x2 rays per pixel)."""
    mask_dilation_px: int = 2
    """Masks are the object's silhouette dilated by this many pixels (full resolution)."""
    object_radius: float = OBJECT_RADIUS
    """Radius of the ball to remove (larger: larger holes, more of them seen by no training view)."""


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
        self.focal = 0.5 * config.width / np.tan(np.deg2rad(config.horizontal_fov_degrees) / 2.0)
        """Focal length in pixels of images/."""
        self.camera_to_worlds = self._camera_poses(rng)
        """OpenGL camera-to-world matrices [N, 3, 4] in file order: test views first, then training views."""

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

    def render(self, camera_to_world: np.ndarray, include_object: bool = True) -> ViewRender:
        """Ray-cast one view (OpenGL camera-to-world [3, 4]) at ``supersampling``^2 rays per pixel."""
        cfg = self.config
        s = cfg.supersampling
        rows, cols = np.meshgrid(
            (np.arange(cfg.height * s) + 0.5) / s, (np.arange(cfg.width * s) + 0.5) / s, indexing="ij"
        )
        cam_dirs = np.stack(
            [(cols - cfg.width / 2.0) / self.focal, -(rows - cfg.height / 2.0) / self.focal, -np.ones_like(rows)],
            axis=-1,
        ).reshape(-1, 3)
        origin = camera_to_world[:, 3]
        dirs = cam_dirs @ camera_to_world[:, :3].T  # unnormalised: the ray parameter t is the depth
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
        rgb = self._albedo(points, normal, material) * self._shading(points, normal)[:, None]
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

    @staticmethod
    def _shading(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Lambertian point light with distance falloff, plus ambient (no shadows)."""
        to_light = LIGHT_POSITION - points
        distance = np.linalg.norm(to_light, axis=1)
        cosine = np.maximum(np.einsum("ij,ij->i", normals, to_light) / distance, 0.0)
        return AMBIENT + DIFFUSE * cosine / (1.0 + (distance / LIGHT_FALLOFF) ** 2)


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
    if config.supersampling < 1 or config.mask_dilation_px < 0:
        problems.append("--supersampling must be at least 1 and --mask-dilation-px at least 0")
    if problems:
        raise MaldInputError("Invalid demo scene parameters: " + "; ".join(problems), fix="Change them and rerun")


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``, then remove only files this generator
    writes (``image<digits>.png`` in the image and label folders, poses_bounds.npy, README.txt, mald_scene.json)."""
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
    for sub in ("images/label", "images_2/label"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _readme(config: DemoSceneConfig, scene: DemoScene) -> str:
    """README.txt: layout summary and every parameter (no paths or dates, so files stay reproducible)."""
    k, n = config.num_test_views, scene.num_views
    lines = [
        "MALD-NeRF demo scene, generated by mald-nerf-demo-scene (SPIn-NeRF / LLFF layout).",
        f"images/: {n} views, {config.width}x{config.height}; in sorted order the first {k} are object-free test",
        f"views (exact ground truth), the last {config.num_train_views} training views with the object.",
        "images/label/: masks (0/1, 1 = object to remove) for every view; images_2/: half resolution.",
        "poses_bounds.npy: LLFF [N, 17], columns [down, right, back, centre, hwf] then near, far.",
        "",
        "parameters:",
    ]
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
    (out_dir / "README.txt").write_text(_readme(config, scene))
    # Tells mald-nerf's default parser how many leading views are object-free (SPIn-NeRF itself uses 40).
    (out_dir / SCENE_INFO_FILE).write_text(json.dumps({"num_test_views": config.num_test_views}) + "\n")
    return out_dir


@dataclass
class GenerateDemoScene:
    """Write the procedural MALD-NeRF demo scene (a textured room corner with a ball to remove) in the SPIn-NeRF
    layout: object-free test views first, then training views with the object, masks, LLFF poses."""

    output_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Directory to write (created; must be empty unless --overwrite)."""
    scene: tyro.conf.OmitArgPrefixes[DemoSceneConfig] = field(default_factory=DemoSceneConfig)
    """Scene parameters."""
    overwrite: bool = False
    """Replace the demo scene files in a non-empty output directory (other files there are left alone)."""

    def main(self) -> None:
        """Generate the scene and print a summary."""
        start = time.perf_counter()
        out = generate_demo_scene(self.output_dir, self.scene, overwrite=self.overwrite, show_progress=True)
        cfg = self.scene
        Console().print(
            f"[bold green]Demo scene written to {out}[/bold green] in {time.perf_counter() - start:.1f} s: "
            f"{cfg.num_test_views} object-free test views (first in sorted order) + {cfg.num_train_views} "
            f"training views with the object, {cfg.width}x{cfg.height}, seed {cfg.seed}."
        )


def entrypoint() -> None:
    """Command-line entry point ``mald-nerf-demo-scene``."""
    tyro.cli(GenerateDemoScene).main()


if __name__ == "__main__":
    entrypoint()
