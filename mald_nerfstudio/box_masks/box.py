"""The 3D box around the object: nerfstudio's crop box, read from the command line or from the viewer.

The box lives in the reconstruction's world frame, the frame nerfstudio's viewer shows for its crop box (the
control panel's "Crop center / scale / rotation", the export panel's ``--obb_center/--obb_rotation/--obb_scale``
flags, and the ``"crop"`` entry the render panel saves into ``camera_paths/*.json``). Rotations are roll, pitch,
yaw in radians, as ``OrientedBox.from_params`` reads them.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from mald_nerfstudio.errors import MaldInputError


@dataclass
class Box:
    """An oriented box in the reconstruction's world frame, as nerfstudio's crop box."""

    center: Tuple[float, float, float]
    """Centre of the box."""
    size: Tuple[float, float, float]
    """Side lengths along the box's own axes (nerfstudio's ``obb_scale``)."""
    rotation: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Roll, pitch, yaw in radians, as ``OrientedBox.from_params`` and ``ns-export --obb_rotation`` use."""

    def rotation_matrix(self) -> np.ndarray:
        """Box-to-world rotation [3, 3] (viser's ``SO3.from_rpy_radians``, as nerfstudio's ``OrientedBox``)."""
        roll, pitch, yaw = self.rotation
        rx = np.array([[1, 0, 0], [0, math.cos(roll), -math.sin(roll)], [0, math.sin(roll), math.cos(roll)]])
        ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        return rz @ ry @ rx

    def _frame(self, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rot = torch.as_tensor(self.rotation_matrix(), dtype=like.dtype, device=like.device)
        centre = torch.as_tensor(self.center, dtype=like.dtype, device=like.device)
        half = torch.as_tensor(self.size, dtype=like.dtype, device=like.device) / 2
        return rot, centre, half

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """Which points [..., 3] lie inside the box (what ``OrientedBox.within`` computes, for any shape)."""
        rot, centre, half = self._frame(points)
        local = (points - centre) @ rot  # R^T (p - c), row vectors
        return (local.abs() < half).all(dim=-1)

    def hit_by(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Which rays [..., 3] pass through the box in front of their origin (slab test in the box's frame): only
        their surface points can lie inside it."""
        rot, centre, half = self._frame(origins)
        local_o = (origins - centre) @ rot
        local_d = directions @ rot
        tiny = torch.finfo(local_d.dtype).tiny
        safe_d = torch.where(local_d.abs() < tiny, torch.full_like(local_d, tiny), local_d)
        t1, t2 = (-half - local_o) / safe_d, (half - local_o) / safe_d
        enter = torch.minimum(t1, t2).amax(dim=-1)
        leave = torch.maximum(t1, t2).amin(dim=-1)
        return leave >= enter.clamp(min=0.0)


def validate_box(box: Box) -> None:
    """Refuse a box with a size that is not positive or values that are not finite (before any training)."""
    values = list(box.center) + list(box.size) + list(box.rotation)
    if not all(math.isfinite(v) for v in values):
        raise MaldInputError(
            f"the box has values that are not finite numbers (centre {box.center}, size {box.size}, rotation "
            f"{box.rotation})",
            fix="pass --box CX CY CZ SX SY SZ with finite numbers",
        )
    if min(box.size) <= 0:
        raise MaldInputError(
            f"the box size {tuple(box.size)} has a side that is zero or negative; the sizes are the full side "
            "lengths along the box's axes",
            fix="pass three positive sizes after the centre: --box CX CY CZ SX SY SZ (or --obb_scale SX SY SZ in "
            "--from-viewer)",
        )


def format_box(box: Box) -> str:
    """The box as the flags that give it back (``--box ... --rotation ...``)."""
    numbers = " ".join(f"{v:.4g}" for v in (*box.center, *box.size))
    return f"--box {numbers} --rotation " + " ".join(f"{v:.4g}" for v in box.rotation)


_VIEWER_FLAG = re.compile(r"^--obb[_-](center|rotation|scale)$")


def read_viewer_box(source: str) -> Box:
    """The box saved or printed by nerfstudio's viewer: a camera path JSON from its render panel (its ``"crop"``
    entry), or the export panel's ``ns-export ... --obb_center X Y Z --obb_rotation RX RY RZ --obb_scale SX SY SZ``
    line (or just those flags; ``--obb-center`` spellings also work)."""
    if source.strip().lower().endswith(".json"):
        return _camera_path_box(Path(source.strip()))
    return parse_viewer_flags(source)


def _camera_path_box(path: Path) -> Box:
    fix = ("in the viewer's control panel open \"Crop Viewport\", tick \"Enable\", fit the box around the object, "
           "then save a camera path in the render panel (or copy the export panel's --obb_* flags instead)")
    if not path.is_file():
        raise MaldInputError("the viewer camera path file does not exist", path, fix)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MaldInputError(f"cannot read it as JSON ({err})", path, fix) from None
    crop = data.get("crop") if isinstance(data, dict) else None
    if not isinstance(crop, dict):
        raise MaldInputError("this camera path holds no crop box (it was saved with the crop viewport off)", path, fix)
    values: Dict[str, Tuple[float, float, float]] = {}
    for key in ("crop_center", "crop_scale", "crop_rot"):
        raw = crop.get(key, [0.0, 0.0, 0.0] if key == "crop_rot" else None)
        try:
            numbers = tuple(float(v) for v in np.asarray(raw, dtype=np.float64).ravel())
        except (TypeError, ValueError):
            numbers = ()
        if len(numbers) != 3:
            raise MaldInputError(f"its crop entry {key!r} is not three numbers ({raw!r})", path, fix)
        values[key] = numbers  # type: ignore[assignment]
    return Box(center=values["crop_center"], size=values["crop_scale"], rotation=values["crop_rot"])


def parse_viewer_flags(text: str) -> Box:
    """The box in the export panel's ``--obb_center/--obb_rotation/--obb_scale`` flags (three numbers each)."""
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise MaldInputError(f"cannot split the --from-viewer text into words ({err})", fix="check its quotes")
    words: List[str] = []
    for token in tokens:  # "--obb_center=1 2 3" or "--obb_center=1" -> flag, values
        flag, eq, rest = token.partition("=")
        words += [flag] + rest.split() if eq and _VIEWER_FLAG.match(flag) else [token]
    found: Dict[str, Sequence[float]] = {}
    for i, word in enumerate(words):
        match = _VIEWER_FLAG.match(word)
        if not match:
            continue
        name, values = match.group(1), words[i + 1 : i + 4]
        try:
            numbers = tuple(float(v) for v in values)
        except ValueError:
            numbers = ()
        if len(numbers) != 3:
            raise MaldInputError(
                f"--obb_{name} in the --from-viewer text must be followed by three numbers, found {values}",
                fix="paste the whole line the viewer's export panel prints, e.g. \"--obb_center 0.1 0 0.2 "
                "--obb_rotation 0 0 0 --obb_scale 0.5 0.5 0.5\"",
            )
        found[name] = numbers
    missing = [f"--obb_{n}" for n in ("center", "rotation", "scale") if n not in found]
    if missing:
        raise MaldInputError(
            f"the --from-viewer text lacks {', '.join(missing)} (it needs --obb_center, --obb_rotation and "
            "--obb_scale, three numbers each, or the path of a camera path JSON saved with the crop box)",
            fix="in the viewer's control panel open \"Crop Viewport\", tick \"Enable\" and fit the box around the "
            "object, then copy the --obb_* flags of the command the export panel prints",
        )
    return Box(center=tuple(found["center"]), size=tuple(found["scale"]),  # type: ignore[arg-type]
               rotation=tuple(found["rotation"]))  # type: ignore[arg-type]
