"""What a new user's scene folder holds besides the views (issue 23): files the OS leaves behind, frames listed
twice, images with transparency, and a file passed where a folder is expected.

Parser-level tests on tiny synthetic scenes; two CLI tests run ``ns-train`` as the user would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from PIL import Image

from mald_nerfstudio.checkpoint_files import read_resume_checkpoint
from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.dataset import InpaintDataset
from mald_nerfstudio.data.image_io import read_rgb
from mald_nerfstudio.data.patch_sampling import PixelPools
from mald_nerfstudio.errors import MaldInputError
from tests.data.test_dataparsers import HEIGHT, WIDTH, box_mask, random_image, write_nerfstudio_scene
from tests.data.test_input_errors import assert_names_file_and_fix, parse_error, scene
from tests.data.test_sampling import make_datamanager
from tests.test_cli import run

OS_LEFTOVERS = {
    ".DS_Store": b"\x00\x00\x00\x01Bud1",
    "Thumbs.db": b"\xd0\xcf\x11\xe0",
    "desktop.ini": b"[.ShellClassInfo]",
}
"""Files macOS and Windows leave in folders a user has opened, with bytes like theirs."""


def tree_digest(root: Path) -> Dict[str, str]:
    """Relative path -> sha256 of every file under ``root``: equal before and after means nothing was written."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def add_leftovers(folder: Path, resource_fork_of: str) -> None:
    """The OS files, a note, and a macOS resource fork ``._<name>`` (an image suffix, but not an image)."""
    for name, data in OS_LEFTOVERS.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("masks drawn in GIMP")
    (folder / f"._{resource_fork_of}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")


def write_rgba(path: Path, alpha: np.ndarray) -> None:
    """Re-save the image at ``path`` with alpha channel ``alpha`` (uint8 [H, W]), colour unchanged."""
    rgb = read_rgb(path)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)


# ------------------------------------------------------------------------- item 4: hidden and non-image files
def test_hidden_and_non_image_files_in_images_and_label_are_ignored_with_a_one_line_note(tmp_path, capsys):
    root = scene(tmp_path)
    clean = MaldDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    images_dir = root / "images_4"
    add_leftovers(images_dir, "img_002.png")
    add_leftovers(images_dir / "label", "img_003.png")
    capsys.readouterr()

    outputs = MaldDataParserConfig(data=root).setup().get_dataparser_outputs("train")

    assert outputs.image_filenames == clean.image_filenames
    assert outputs.metadata["inpaint_mask_filenames"] == clean.metadata["inpaint_mask_filenames"]
    notes = [line for line in capsys.readouterr().out.splitlines() if "ignoring" in line]
    assert len(notes) == 2, notes  # one line per folder
    for note, folder, fork in zip(notes, (images_dir, images_dir / "label"), ("._img_002.png", "._img_003.png")):
        assert f"in {folder}:" in note and "5 hidden or non-image" in note, note
        assert all(name in note for name in [*OS_LEFTOVERS, "notes.txt", fork]), note


def test_a_non_image_file_with_the_stem_of_a_view_is_not_taken_for_its_mask(tmp_path):
    root = scene(tmp_path)
    (root / "images_4" / "label" / "img_003.png").unlink()
    (root / "images_4" / "label" / "img_003.txt").write_text("todo: draw this mask")
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "images_4" / "img_003.png")
    assert "has no inpainting mask" in str(err)


def test_lora_customisation_folders_skip_hidden_and_non_image_files(tmp_path, capsys):
    from mald_nerfstudio.inpaint.lora.cli import read_scene_folders

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
        add_leftovers(tmp_path / folder, "000.png")
    for i in range(2):
        Image.fromarray(random_image(i)).save(tmp_path / "images" / f"{i:03d}.png")
        Image.fromarray(box_mask()).save(tmp_path / "masks" / f"{i:03d}.png")
    _, read_masks, names = read_scene_folders(tmp_path / "images", tmp_path / "masks")
    assert names == ["000.png", "001.png"] and torch.equal(read_masks[1], torch.from_numpy(box_mask().astype(bool)))
    assert capsys.readouterr().out.count("Note: ignoring 5 hidden or non-image file(s)") == 2


