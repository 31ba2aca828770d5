"""``mald-nerf-masks``: inpainting masks for every view of a capture from one 3D box around the object.

Without a box it trains (or reuses) the reconstruction and serves nerfstudio's viewer on it, where the crop box is
fitted around the object; with a box it writes OUT/images/, OUT/masks/, OUT/transforms.json (for
``ns-train mald-nerf --data OUT``) and OUT/mask_preview.png. The capture itself is never written.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import tyro
from rich.console import Console

from mald_nerfstudio.box_masks.box import Box, format_box, read_viewer_box, validate_box
from mald_nerfstudio.box_masks.masks import (
    MaskCleaning,
    ShadowExtension,
    add_cast_shadow,
    check_raw_fractions,
    clean_mask,
    render_box_masks,
    report_fractions,
    write_preview,
)
from mald_nerfstudio.box_masks.reconstruction import (
    ReconstructionSettings,
    box_from_capture_frame,
    load_reconstruction,
    train_or_reuse,
)
from mald_nerfstudio.box_masks.scene import prepare_output, read_scene, write_transforms
from mald_nerfstudio.data.image_io import read_rgb, write_mask_png
from mald_nerfstudio.errors import MaldInputError

PREVIEW_FILE = "mask_preview.png"
"""The preview grid in OUT."""

_CONSOLE = Console()


@dataclass
class BoxMaskResult:
    """What :func:`generate_box_masks` wrote."""

    transforms: Path
    """OUT/transforms.json (with inpaint_mask_path per frame)."""
    names: List[str]
    """Image names of the masked views, in order."""
    masks: List[np.ndarray]
    """Cleaned masks, bool [H, W], in the order of ``names``."""
    fractions: List[float]
    """Masked fraction of each view (after cleaning)."""
    config_path: Path
    """The reconstruction's config.yml."""


def generate_box_masks(scene_path: Path, out_dir: Path, box: Box, settings: Optional[ReconstructionSettings] = None,
                       cleaning: Optional[MaskCleaning] = None, downscale_factor: Optional[int] = None,
                       num_test_views: Optional[int] = None, depth_output: str = "expected_depth",
                       retrain: bool = False, show_progress: bool = True, box_frame: str = "viewer",
                       shadow: Optional[ShadowExtension] = None) -> BoxMaskResult:
    """Reconstruct (or reuse), render the depth inside the box for every view, clean and write the masks. The box
    is in the reconstruction's frame (``box_frame="viewer"``) or in the capture's coordinates ("capture")."""
    settings = settings or ReconstructionSettings()
    cleaning = cleaning or MaskCleaning()
    validate_box(box)
    out_dir = Path(out_dir)
    scene = prepare_output(scene_path, out_dir, downscale_factor, num_test_views)
    if box_frame == "capture":
        box = box_from_capture_frame(box, out_dir, scene)
        _CONSOLE.print(f"The box in the reconstruction's frame (as the viewer shows it): {format_box(box)}")
    config_path = train_or_reuse(out_dir, scene, Path(scene_path), settings, retrain)
    pipeline = load_reconstruction(config_path)
    views = render_box_masks(pipeline, box, depth_output, show_progress)
    names = [Path(p).name for p in pipeline.datamanager.train_dataparser_outputs.image_filenames]
    check_raw_fractions([view.inside.mean() for view in views], box, config_path)
    images = [read_rgb(out_dir / "images" / name) for name in names]
    masks = [clean_mask(view, image, cleaning) for view, image in zip(views, images)]
    if shadow is not None and shadow.enabled:
        masks = [add_cast_shadow(mask, image, shadow, cleaning) for mask, image in zip(masks, images)]
    mask_paths: Dict[str, str] = {}
    for name, mask in zip(names, masks):
        mask_name = f"masks/{Path(name).stem}.png"
        if mask_name in mask_paths.values():  # a.jpg and a.png
            mask_name = f"masks/{name}.png"
        write_mask_png(out_dir / mask_name, mask)
        mask_paths[name] = mask_name
    transforms = write_transforms(out_dir, scene, "transforms.json", masks=mask_paths)
    write_preview(out_dir / PREVIEW_FILE, [out_dir / "images" / n for n in names], masks, names)
    return BoxMaskResult(transforms=transforms, names=names, masks=masks,
                         fractions=[float(m.mean()) for m in masks], config_path=config_path)


def serve_viewer(config_path: Path, port: Optional[int]) -> None:
    """nerfstudio's viewer on the reconstruction (as ``ns-viewer``), on this machine only, until Ctrl-C."""
    from nerfstudio.scripts.viewer.run_viewer import RunViewer, ViewerConfigWithoutNumRays

    from mald_nerfstudio.method_configs.mald_nerf import VIEWER_HOST

    try:
        RunViewer(load_config=config_path,
                  viewer=ViewerConfigWithoutNumRays(websocket_host=VIEWER_HOST, websocket_port=port)).main()
    except KeyboardInterrupt:
        _CONSOLE.print("Viewer closed.")


@dataclass
class GenerateBoxMasks:
    """Inpainting masks for every view of a capture from one 3D box around the object: trains a quick nerfacto
    reconstruction (object present), renders each view's depth and marks the pixels whose surface lies in the
    box; writes images/, masks/, transforms.json (for ns-train mald-nerf --data OUT) and mask_preview.png. Without
    a box it serves nerfstudio's viewer on the reconstruction, to fit the crop box around the object."""

    data: Path
    """Scene folder: transforms.json (ns-process-data) or SPIn-NeRF / LLFF (poses_bounds.npy + images/); read only."""
    output_dir: Path
    """Folder to write images/, masks/, transforms.json, mask_preview.png and reconstruction/ into."""
    box: Optional[Tuple[float, float, float, float, float, float]] = None
    """CX CY CZ SX SY SZ: the crop box's centre and size as the viewer shows them; none: reconstruct and view."""
    rotation: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    """RX RY RZ: the crop box's rotation as the viewer shows it (roll, pitch, yaw in radians)."""
    box_frame: Literal["viewer", "capture"] = "viewer"
    """Frame of --box: viewer (as the viewer shows it) or capture (transforms.json's / poses_bounds.npy's, unscaled)."""
    from_viewer: Optional[str] = None
    """The export panel's ns-export line (its --obb_* flags), or a camera path JSON saved with the crop box."""
    reconstruction: ReconstructionSettings = field(default_factory=ReconstructionSettings)
    """The quick reconstruction (steps, device, rays)."""
    downscale_factor: Optional[int] = None
    """Read images_N/ (both layouts), the masks' resolution; None: an LLFF scene's own labels' (images_N/label/), else 1."""
    num_test_views: Optional[int] = None
    """LLFF: the first K images are object-free (no mask); None: mald_scene.json, the labels, or 40 as ns-train."""
    depth_output: str = "expected_depth"
    """The model output used as depth: expected_depth (nerfacto's weighted mean) or depth (its median)."""
    cleaning: MaskCleaning = field(default_factory=MaskCleaning)
    """How the raw masks are cleaned."""
    shadow: ShadowExtension = field(default_factory=ShadowExtension)
    """Extend the masks over the object's cast shadow (--shadow.enabled)."""
    retrain: bool = False
    """Train a new reconstruction even when OUT holds a finished one for the same scene and settings."""
    viewer: bool = True
    """Without a box: serve nerfstudio's viewer on the reconstruction (127.0.0.1) until Ctrl-C."""
    websocket_port: Optional[int] = None
    """The viewer's port; None: nerfstudio's default (7007, or the next free one)."""

    def resolve_box(self) -> Optional[Box]:
        """The box from --box/--rotation or --from-viewer (at most one of them); None without either."""
        if self.box is not None and self.from_viewer is not None:
            raise MaldInputError(
                "give the box either as --box CX CY CZ SX SY SZ [--rotation RX RY RZ] or as --from-viewer \"...\", "
                "not both",
                fix="pass only one of --box and --from-viewer",
            )
        if self.box is None and self.from_viewer is None:
            return None
        if self.from_viewer is not None:
            if self.box_frame != "viewer":
                raise MaldInputError("--from-viewer gives the box in the viewer's frame; --box-frame capture is for "
                                     "--box only", fix="drop --box-frame")
            box = read_viewer_box(self.from_viewer)
        else:
            box = Box(center=tuple(self.box[:3]), size=tuple(self.box[3:]), rotation=tuple(self.rotation))
        validate_box(box)
        return box

    def main(self) -> Optional[BoxMaskResult]:
        """Run; print the masked fraction per view and the next command."""
        start = time.perf_counter()
        box = self.resolve_box()
        scene = read_scene(self.data, self.downscale_factor, self.num_test_views)  # bad input: before writing
        for note in scene.notes:
            _CONSOLE.print(f"[bold]Note:[/bold] {note}.", soft_wrap=True)
        again = f"mald-nerf-masks --data {self.data} --output-dir {self.output_dir}"
        if box is None:
            scene = prepare_output(self.data, self.output_dir, self.downscale_factor, self.num_test_views)
            config_path = train_or_reuse(Path(self.output_dir), scene, Path(self.data), self.reconstruction,
                                         self.retrain)
            _CONSOLE.print(
                "[bold]The reconstruction is ready; now find the object's box.[/bold] In the viewer's control panel "
                "open \"Crop Viewport\", tick \"Enable\" and fit the box around the object (drag the gizmo or type "
                "the crop center, scale and rotation); the viewer then shows only what the box holds. In the export "
                "panel, tick \"Use Crop\" and copy the --obb_* flags it prints, then run (the reconstruction is "
                f"reused):\n{again} --from-viewer \"--obb_center ... --obb_rotation ... --obb_scale ...\"\n"
                f"To view it again:\nns-viewer --load-config {config_path} --viewer.websocket-host 127.0.0.1",
                soft_wrap=True,
            )
            if self.viewer:
                serve_viewer(config_path, self.websocket_port)
            return None
        result = generate_box_masks(
            self.data, self.output_dir, box, self.reconstruction, self.cleaning,
            downscale_factor=self.downscale_factor, num_test_views=self.num_test_views,
            depth_output=self.depth_output, retrain=self.retrain, box_frame=self.box_frame, shadow=self.shadow,
        )
        report_fractions(result.names, result.fractions)
        _CONSOLE.print(
            f"[bold green]Wrote {len(result.names)} masks[/bold green] ({scene.notes[0].split(';')[0]}) for the box "
            f"{format_box(box)} to {self.output_dir}/masks, {result.transforms} and "
            f"{Path(self.output_dir) / PREVIEW_FILE} in {time.perf_counter() - start:.0f} s. Check the preview, "
            f"then train on a GPU:\nns-train mald-nerf --data {self.output_dir}\nor on a CPU:\n"
            f"ns-train mald-nerf-tiny --data {self.output_dir}",
            soft_wrap=True,
        )
        return result


def quiet_library_warnings() -> None:
    """Hide torch's and nerfstudio's deprecation and indexing warnings: they are not the user's business and bury
    the command this tool prints last."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|nerfstudio|torchvision)(\.|$)")


def entrypoint() -> None:
    """Command-line entry point ``mald-nerf-masks``."""
    from mald_nerfstudio.errors import install_run_hooks

    install_run_hooks()
    quiet_library_warnings()
    tyro.cli(GenerateBoxMasks).main()


if __name__ == "__main__":
    entrypoint()
