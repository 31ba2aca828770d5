"""The input capture, read without writing to it, and the output folder's images and transforms files.

A scene is a nerfstudio capture (``transforms.json``, e.g. from ``ns-process-data``) or a SPIn-NeRF / LLFF folder
(``poses_bounds.npy`` + ``images*/``). Both become the same :class:`SceneInput`: nerfstudio transforms frames plus
the scale of the reconstruction's world frame. The scale puts the scene's far depth at about 1, as the SPIn-NeRF
parser does for training (docs/decisions.md, "Masks from a 3D box"): nerfstudio's own scale puts the cameras in
the unit cube, which leaves a forward-facing scene ten or more units away, where nerfacto's contraction and
proposal samples give it almost no resolution.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from mald_nerfstudio.data.image_io import list_images
from mald_nerfstudio.data.llff_poses import FAR_DEPTH_PERCENTILE, far_depth_scale, load_poses_bounds
from mald_nerfstudio.data.object_free_views import object_free_views
from mald_nerfstudio.errors import MaldInputError

RECONSTRUCTION_JSON = "reconstruction.json"
"""The transforms file (all views with the object, no masks) the reconstruction is trained on, in OUT."""
POINT_FAR_PERCENTILE = 99.9
"""A view's far depth from a sparse point cloud: this percentile of the depths of the points it sees (as LLFF)."""


@dataclass
class SceneFrame:
    """One view of the input scene, in the form written to the output transforms files."""

    source: Path
    """The image file in the scene folder."""
    name: str
    """File name under OUT/images/ (and OUT/masks/)."""
    frame: Dict
    """The transforms.json frame (intrinsics where per frame, transform_matrix); paths are set when written."""
    object_free: bool = False
    """An object-free ground-truth view (SPIn-NeRF test view): not reconstructed, no mask, eval only."""


@dataclass
class SceneInput:
    """A scene converted to nerfstudio's transforms format (no masks)."""

    meta: Dict
    """Top-level transforms.json keys (shared intrinsics, camera model, applied_transform) without frames."""
    frames: List[SceneFrame]
    """All views in order."""
    scale_factor: Optional[float] = None
    """Scale of the reconstruction's frame after nerfstudio's orienting and centring; None: nerfstudio's auto scale."""
    scale_source: str = "nerfstudio's camera-based scale"
    """Where the scale came from, for the log."""
    notes: List[str] = field(default_factory=list)
    """What was read and why (image folder and size, object-free views), for the console."""


def label_downscale_factor(scene: Path) -> Optional[int]:
    """The N of the smallest images_N/ (images/: 1) of an LLFF folder that has its own labels in label/, i.e. the
    resolution the scene's masks are drawn at (SPIn-NeRF: images_2/label/); None without labels."""
    factors = sorted((1 if p.parent.name == "images" else int(p.parent.name[7:]))
                     for p in Path(scene).glob("images*/label")
                     if p.is_dir() and (p.parent.name == "images" or p.parent.name[7:].isdigit()) and list_images(p))
    return factors[0] if factors else None


def read_scene(scene: Path, downscale_factor: Optional[int] = None, num_test_views: Optional[int] = None
               ) -> SceneInput:
    """Read a nerfstudio capture or a SPIn-NeRF / LLFF folder (nothing is written there). ``downscale_factor``
    None: the resolution of an LLFF folder's own labels (images_N/label/), else full size."""
    scene = Path(scene)
    if not scene.exists():
        raise MaldInputError(
            "the scene folder does not exist", scene,
            "pass --data with a folder holding transforms.json (ns-process-data) or poses_bounds.npy + images/",
        )
    if downscale_factor is not None and downscale_factor < 1:
        raise MaldInputError(f"--downscale-factor must be at least 1, got {downscale_factor}",
                             fix="pass 1 (full resolution) or the N of an images_N/ folder")
    if (scene / "transforms.json").is_file() or scene.suffix == ".json":
        return _read_transforms(scene if scene.suffix == ".json" else scene / "transforms.json", downscale_factor or 1)
    if (scene / "poses_bounds.npy").is_file():
        return _read_llff(scene, downscale_factor, num_test_views)
    raise MaldInputError(
        "the folder holds neither transforms.json (nerfstudio format) nor poses_bounds.npy (SPIn-NeRF / LLFF)",
        scene,
        "run ns-process-data on your images or video first, or pass a SPIn-NeRF / LLFF scene folder",
    )


def _unique_name(name: str, used: set) -> str:
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, k = name, 1
    while candidate in used:
        candidate, k = f"{stem}_{k}{suffix}", k + 1
    used.add(candidate)
    return candidate


_INTRINSICS = ("fl_x", "fl_y", "cx", "cy")


def _downscaled(path: Path, data_dir: Path, factor: int) -> Path:
    """nerfstudio's convention for a downscale factor N: ``images_N/<file name>`` beside transforms.json."""
    return path if factor == 1 else data_dir / f"images_{factor}" / path.name


def _scale_intrinsics(entry: Dict, factor: int, size: tuple) -> None:
    """Divide the pinhole intrinsics by ``factor`` (as nerfstudio's downscale does) and set the image size read
    from the downscaled file."""
    for key in _INTRINSICS:
        if key in entry:
            entry[key] = float(entry[key]) / factor
    entry["w"], entry["h"] = int(size[0]), int(size[1])


def _read_transforms(path: Path, downscale_factor: int) -> SceneInput:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MaldInputError(f"not valid JSON ({err})", path, "fix the file's syntax") from None
    frames = meta.pop("frames", None) or []
    if not frames:
        raise MaldInputError("no frames listed", path, "list the views under \"frames\" (ns-process-data does)")
    ply = meta.pop("ply_file_path", None)
    for key in ("train_filenames", "val_filenames", "test_filenames", "mask_path"):
        meta.pop(key, None)
    used: set = set()
    out: List[SceneFrame] = []
    for frame in frames:
        frame = dict(frame)
        original = path.parent / frame.get("file_path", "")
        source = _downscaled(original, path.parent, downscale_factor)
        if not source.is_file():
            fix = ("fix file_path in transforms.json" if downscale_factor == 1 else
                   f"create {source.parent.name}/ (ns-process-data does) or pass another --downscale-factor")
            raise MaldInputError(f"frame image {frame.get('file_path')!r} not found", source, fix)
        matrix = np.asarray(frame.get("transform_matrix", []), dtype=np.float64)
        if matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
            raise MaldInputError(
                f"frame {frame.get('file_path')} has a transform_matrix that is not a finite 3x4/4x4 matrix",
                path, "re-run pose estimation for that view or remove the frame",
            )
        for key in ("mask_path", "depth_file_path", "inpaint_mask_path"):
            frame.pop(key, None)
        if downscale_factor > 1 and any(k in frame for k in (*_INTRINSICS, "w", "h")):
            with Image.open(source) as image:
                _scale_intrinsics(frame, downscale_factor, image.size)
        out.append(SceneFrame(source=source, name=_unique_name(source.name, used), frame=frame,
                              object_free=bool(frame.get("object_free", False))))
    if downscale_factor > 1:
        with Image.open(out[0].source) as image:
            _scale_intrinsics(meta, downscale_factor, image.size)
    folder = out[0].source.parent
    size = f"{meta['w']}x{meta['h']}" if "w" in meta and "h" in meta else "the frames' sizes"
    scene = SceneInput(meta=meta, frames=out, notes=[
        f"images from {folder.name}/ at {size}; the box in capture coordinates (--box-frame capture) is in "
        f"{path.name}'s own frame, before nerfstudio's orienting and scaling"])
    if ply:
        points = read_ply_points(path.parent / ply) * float(meta.get("applied_scale", 1.0))
        far = far_depths_from_points(points, scene)
        if far is not None:
            scene.scale_factor = far_depth_scale(far, FAR_DEPTH_PERCENTILE)
            scene.scale_source = f"the far depths of the {len(points)} points in {ply}"
    return scene


def read_ply_points(path: Path) -> np.ndarray:
    """Vertex positions [N, 3] of a point cloud PLY (ns-process-data's ``sparse_pc.ply``), read with plyfile."""
    from plyfile import PlyData, PlyParseError

    try:
        vertices = PlyData.read(str(path))["vertex"]
        return np.stack([np.asarray(vertices[k], dtype=np.float64) for k in ("x", "y", "z")], axis=-1)
    except (OSError, ValueError, KeyError, IndexError, PlyParseError) as err:
        raise MaldInputError(
            f"cannot read its vertex positions ({type(err).__name__}: {err})", path,
            "re-export it (ns-process-data writes sparse_pc.ply) or remove ply_file_path from transforms.json",
        ) from None


def far_depths_from_points(points: np.ndarray, scene: SceneInput) -> Optional[np.ndarray]:
    """Each view's far depth (along its optical axis) from the points in front of it and inside its field of view
    (pinhole, distortion ignored); None when no view sees at least 10 points."""
    fars = []
    for item in scene.frames:
        entry = {**scene.meta, **item.frame}
        try:
            fx, fy = float(entry["fl_x"]), float(entry["fl_y"])
            w, h = float(entry["w"]), float(entry["h"])
        except (KeyError, TypeError, ValueError):
            return None
        c2w = np.asarray(item.frame["transform_matrix"], dtype=np.float64)[:3]
        local = (points - c2w[:, 3]) @ c2w[:, :3]  # OpenGL camera: x right, y up, looking down -z
        depth = -local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            in_view = (np.abs(local[:, 0] / depth) * fx <= w / 2) & (np.abs(local[:, 1] / depth) * fy <= h / 2)
            seen = (depth > 0) & in_view
        if seen.sum() >= 10:
            fars.append(np.percentile(depth[seen], POINT_FAR_PERCENTILE))
    return np.asarray(fars) if fars else None


def _read_llff(scene: Path, downscale_factor: Optional[int], num_test_views: Optional[int]) -> SceneInput:
    notes = []
    if downscale_factor is None:
        downscale_factor = label_downscale_factor(scene) or 1
        folder_name = "images" if downscale_factor == 1 else f"images_{downscale_factor}"
        if downscale_factor > 1:
            notes.append(f"the scene's own labels are in {folder_name}/label/, so the masks are made for "
                         f"{folder_name}/ (--downscale-factor 1 makes them for images/)")
    folder = scene / ("images" if downscale_factor == 1 else f"images_{downscale_factor}")
    images = list_images(folder) if folder.is_dir() else []
    if not images:
        raise MaldInputError(
            f"no images in {folder.name}/", folder,
            "an LLFF / SPIn-NeRF scene needs its images in images/ (or images_N/ with --downscale-factor N)",
        )
    poses = load_poses_bounds(scene / "poses_bounds.npy", [p.name for p in images])
    found = object_free_views(scene, num_test_views)
    if found.count or num_test_views is None:
        notes.append(f"{found.count} object-free view(s) ({found.reason}): not reconstructed, no mask")
    with Image.open(images[0]) as first:
        width, height = first.size
    full_h, full_w, focal = poses.hwf[0]
    focal_px = float(focal * width / full_w)  # LLFF stores one focal length (square pixels)
    meta = {
        "camera_model": "OPENCV", "fl_x": focal_px, "fl_y": focal_px, "cx": width / 2.0, "cy": height / 2.0,
        "w": int(width), "h": int(height), "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
    }
    used: set = set()
    frames = []
    for index, (image, c2w) in enumerate(zip(images, poses.camera_to_worlds)):
        matrix = np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
        frames.append(SceneFrame(source=image, name=_unique_name(image.name, used),
                                 frame={"transform_matrix": matrix.tolist()},
                                 object_free=index < found.count))
    notes.insert(0, f"images from {folder.name}/ at {width}x{height}; a box in capture coordinates (--box-frame capture) "
                    "is in the world frame of poses_bounds.npy's camera positions, unscaled")
    return SceneInput(meta=meta, frames=frames, scale_factor=far_depth_scale(poses.bounds[:, 1], FAR_DEPTH_PERCENTILE),
                      scale_source="the far bounds in poses_bounds.npy", notes=notes)


def write_transforms(out_dir: Path, scene: SceneInput, filename: str, masks: Optional[Dict[str, str]] = None,
                     include_object_free: bool = True) -> Path:
    """Write ``out_dir/filename`` listing the copied images (and the masks where given)."""
    frames = []
    for item in scene.frames:
        if item.object_free and not include_object_free:
            continue
        frame = dict(item.frame)
        frame["file_path"] = f"images/{item.name}"
        frame.pop("object_free", None)
        if item.object_free:
            frame["object_free"] = True
        elif masks is not None and item.name in masks:
            frame["inpaint_mask_path"] = masks[item.name]
        frames.append(frame)
    path = out_dir / filename
    path.write_text(json.dumps({**scene.meta, "frames": frames}, indent=2) + "\n")
    return path


def prepare_output(scene_path: Path, out_dir: Path, downscale_factor: Optional[int] = None,
                   num_test_views: Optional[int] = None) -> SceneInput:
    """Read the scene, copy its images to OUT/images/ and write OUT/reconstruction.json (no masks)."""
    scene_path, out_dir = Path(scene_path), Path(out_dir)
    scene = read_scene(scene_path, downscale_factor, num_test_views)
    folder = scene_path if scene_path.is_dir() else scene_path.parent
    if folder.resolve() == out_dir.resolve() or out_dir.resolve().is_relative_to(folder.resolve()):
        raise MaldInputError("the output folder is (inside) the scene folder; the scene is never written",
                             out_dir, "pass another --output-dir")
    if not any(not f.object_free for f in scene.frames):
        raise MaldInputError("the scene has no views with the object (all are object-free)", scene_path,
                             "pass --num-object-free-views 0")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    for item in scene.frames:
        target = out_dir / "images" / item.name
        if not target.is_file() or target.stat().st_size != item.source.stat().st_size:
            shutil.copyfile(item.source, target)
    write_transforms(out_dir, scene, RECONSTRUCTION_JSON, include_object_free=False)
    return scene
