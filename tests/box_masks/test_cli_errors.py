"""``mald-nerf-masks`` refuses bad input in one paragraph before it trains or writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mald_nerfstudio.box_masks.cli import GenerateBoxMasks
from mald_nerfstudio.errors import MaldInputError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_box_options():
    with pytest.raises(MaldInputError, match="not both"):
        GenerateBoxMasks(data=Path("x"), output_dir=Path("y"), box=(0, 0, 0, 1, 1, 1),
                         from_viewer="--obb_center 0 0 0 --obb_rotation 0 0 0 --obb_scale 1 1 1").resolve_box()
    assert GenerateBoxMasks(data=Path("x"), output_dir=Path("y")).resolve_box() is None  # reconstruct and view
    box = GenerateBoxMasks(data=Path("x"), output_dir=Path("y"), box=(1, 2, 3, 4, 5, 6), rotation=(0.1, 0, 0)
                           ).resolve_box()
    assert box.center == (1, 2, 3) and box.size == (4, 5, 6) and box.rotation == (0.1, 0, 0)
    with pytest.raises(MaldInputError, match="zero or negative"):
        GenerateBoxMasks(data=Path("x"), output_dir=Path("y"),
                         from_viewer="--obb_center 0 0 0 --obb_rotation 0 0 0 --obb_scale 0 1 1").resolve_box()


def test_bad_box_or_missing_scene_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(MaldInputError, match="zero or negative"):
        GenerateBoxMasks(data=tmp_path / "missing", output_dir=tmp_path / "out", box=(0, 0, 0, 1, -1, 1)).main()
    with pytest.raises(MaldInputError, match="does not exist"):
        GenerateBoxMasks(data=tmp_path / "missing", output_dir=tmp_path / "out", box=(0, 0, 0, 1, 1, 1)).main()
    assert not (tmp_path / "out").exists()


def test_command_line_prints_one_paragraph(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mald_nerfstudio.box_masks.cli", "--data", str(tmp_path / "missing"),
         "--output-dir", str(tmp_path / "out"), "--box", "0", "0", "0", "1", "1", "1"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert proc.returncode == 1
    assert "mald-nerfstudio error" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_switches_a_user_types():
    import tyro

    command = tyro.cli(GenerateBoxMasks, args=[
        "--data", "capture", "--output-dir", "out", "--box", "0", "0", "0", "1", "1", "1", "--box-frame", "capture",
        "--cleaning.no-refine-edges", "--cleaning.dilate-px", "4", "--cleaning.edge-colours", "rgb", "--no-viewer",
        "--retrain",
        "--reconstruction.steps", "50", "--reconstruction.device", "cpu"])
    assert command.box_frame == "capture" and not command.cleaning.refine_edges and command.cleaning.dilate_px == 4
    assert not command.viewer and command.retrain and command.cleaning.edge_colours == "rgb"
    assert tyro.cli(GenerateBoxMasks, args=["--data", "c", "--output-dir", "o"]).cleaning.edge_colours == "chromaticity"
    assert command.reconstruction.steps == 50 and command.reconstruction.device == "cpu"
    with pytest.raises(MaldInputError, match="--box-frame capture is for --box only"):
        GenerateBoxMasks(data=Path("x"), output_dir=Path("y"), box_frame="capture",
                         from_viewer="--obb_center 0 0 0 --obb_rotation 0 0 0 --obb_scale 1 1 1").resolve_box()
