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


# --------------------------------------------------------------------------------- item 5: repeated frames
@pytest.mark.parametrize("spelling", ["images/frame_01.png", "./images/frame_01.png", "../scene/images/frame_01.png",
                                      "{root}/images/frame_01.png"])
def test_a_frame_listed_twice_is_refused_naming_the_file_and_the_entries(tmp_path, spelling):
    frames = [{"object_free": True}, {"mask": box_mask()}, {"mask": box_mask()}]
    root = write_nerfstudio_scene(tmp_path / "scene", frames)
    meta = json.loads((root / "transforms.json").read_text())
    repeat = dict(meta["frames"][1], file_path=spelling.format(root=root))  # one image, however its path is spelt
    meta["frames"] += [repeat, dict(repeat)]
    (root / "transforms.json").write_text(json.dumps(meta))
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "transforms.json")
    assert "images/frame_01.png in frames [1], [3], [4]" in str(err), err
    assert ("identical copies" in str(err)) == (spelling == "images/frame_01.png"), err


def test_repeated_frames_with_different_poses_are_called_so(tmp_path):
    root = write_nerfstudio_scene(tmp_path, [{"object_free": True}, {"mask": box_mask()}, {}])
    meta = json.loads((root / "transforms.json").read_text())
    moved = json.loads(json.dumps(meta["frames"][2]))
    moved["transform_matrix"][0][3] += 0.5
    meta["frames"].append(moved)
    (root / "transforms.json").write_text(json.dumps(meta))
    err = parse_error(root)
    assert "images/frame_02.png in frames [2], [3] (entries that differ)" in str(err), err


# -------------------------------------------------------------------------------- item 6: RGBA training views
def test_transparent_training_pixels_join_the_mask_and_are_never_sampled_as_observed(tmp_path, capsys):
    root = scene(tmp_path)
    view = root / "images_4" / "img_003.png"  # training view 1 (views 0 and 1 are object-free)
    alpha = np.full((HEIGHT, WIDTH), 255, np.uint8)
    alpha[:4] = 0  # fully transparent rows
    alpha[5, :] = 127  # less than half opaque: not observed either
    alpha[6, :] = 128  # at least half opaque: observed, colour as stored
    write_rgba(view, alpha)
    write_rgba(root / "images_4" / "img_000.png", alpha)  # an evaluation view: alpha is dropped, no mask added
    before = tree_digest(root)
    capsys.readouterr()

    dm = make_datamanager(root)

    transparent = torch.from_numpy(alpha < 128)
    assert torch.equal(dm.masks[1], torch.from_numpy(box_mask().astype(bool)) | transparent)
    assert torch.equal(dm.masks[0], torch.from_numpy(box_mask().astype(bool)))  # an opaque training view
    pools = PixelPools.from_masks(dm.masks)
    observed = pools.unravel(pools.observed)
    in_view = observed[observed[:, 0] == 1]
    assert not transparent[in_view[:, 1], in_view[:, 2]].any()
    assert (in_view[:, 1] == 6).sum() == WIDTH  # row 6 (alpha 128, outside the box) is observed in full
    assert torch.equal(dm.originals[1], torch.from_numpy(read_rgb(view)))  # colour kept, never written
    assert not dm.eval_dataset.inpaint_mask(0).any() and dm.eval_dataset.transparent_pixels(0) is None
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Note:")]
    assert len(note) == 1 and f"Note: {5 * WIDTH} pixels" in note[0] and "1 training view(s)" in note[0], note
    assert tree_digest(root) == before


def test_training_view_almost_all_transparent_is_refused_naming_the_image(tmp_path):
    root = scene(tmp_path)
    view = root / "images_4" / "img_004.png"
    alpha = np.zeros((HEIGHT, WIDTH), np.uint8)
    alpha[-1, :] = 255  # 1 row of 30 observed, minus the mask: >= 95 % unobserved
    write_rgba(view, alpha)
    err = parse_error(root)
    assert_names_file_and_fix(err, view)
    assert "transparent" in str(err) and "without transparency" in err.fix


def test_a_scene_whose_only_unobserved_pixels_are_transparent_trains(tmp_path):
    # No object is marked, but transparent pixels were not seen: there is something to inpaint, so no refusal.
    root = scene(tmp_path, masks={i: np.zeros((HEIGHT, WIDTH), np.uint8) for i in range(2, 6)})
    alpha = np.full((HEIGHT, WIDTH), 255, np.uint8)
    alpha[:3, :5] = 0
    write_rgba(root / "images_4" / "img_002.png", alpha)
    outputs = MaldDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    assert InpaintDataset(outputs).inpaint_mask(0).sum() == 15


# -------------------------------------------------------------------- item 8: a file where a folder is expected
def test_data_pointing_at_a_file_of_the_scene_says_file_and_names_the_folder(tmp_path):
    root = scene(tmp_path)
    err = parse_error(root / "poses_bounds.npy")
    assert_names_file_and_fix(err, root / "poses_bounds.npy")
    assert "names a file" in str(err)
    assert "in this folder" not in str(err) and f"--data {root}" in err.fix


def test_load_dir_pointing_at_a_checkpoint_file_says_file_and_how_to_load_it(tmp_path):
    checkpoint = tmp_path / "nerfstudio_models" / "step-000000010.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"not loaded")
    with pytest.raises(MaldInputError) as info:
        read_resume_checkpoint(checkpoint, None, None)
    assert_names_file_and_fix(info.value, checkpoint)
    assert "in this folder" not in str(info.value)
    assert f"--load-checkpoint {checkpoint}" in info.value.fix and f"--load-dir {checkpoint.parent}" in info.value.fix


# ---------------------------------------------------------------------------------------- the user's commands
def ns_train(data: Path, out: Path, *extra: str):
    return run(
        ["ns-train", "mald-nerf-tiny", "--data", str(data), "--output-dir", str(out), "--vis", "tensorboard",
         "--machine.device-type", "cpu", "--max-num-iterations", "2", *extra],
        cwd=out.parent, timeout=300,
    )


@pytest.mark.slow
def test_ns_train_on_a_scene_with_os_leftovers_and_an_rgba_view_trains_and_says_what_it_skipped(demo_scene, tmp_path):
    data = tmp_path / "scene"
    shutil.copytree(demo_scene, data)
    label = data / "images" / "label"
    add_leftovers(label, sorted(label.glob("*.png"))[0].name)
    views = sorted((data / "images").glob("*.png"))
    height, width = read_rgb(views[-1]).shape[:2]
    alpha = np.full((height, width), 255, np.uint8)
    alpha[: height // 4] = 0
    write_rgba(views[-1], alpha)  # the last view is a training view (the first ones are object-free)
    before = tree_digest(data)

    result = ns_train(data, tmp_path / "out")

    assert result.returncode == 0, result.stdout[-3000:]
    assert "Traceback" not in result.stdout
    assert f"Note: ignoring 5 hidden or non-image file(s) in {label}:" in result.stdout, result.stdout[-3000:]
    assert f"Note: {(height // 4) * width} pixels" in result.stdout, result.stdout[-3000:]
    assert list((tmp_path / "out").rglob("step-*.ckpt"))
    assert tree_digest(data) == before  # nothing written into the scene, the RGBA original untouched


@pytest.mark.slow
def test_ns_train_on_a_transforms_json_with_a_repeated_frame_refuses_in_one_paragraph(tmp_path):
    data = write_nerfstudio_scene(tmp_path / "scene", [{"object_free": True}, {"mask": box_mask()}, {}])
    meta = json.loads((data / "transforms.json").read_text())
    meta["frames"].append(meta["frames"][1])
    (data / "transforms.json").write_text(json.dumps(meta))
    before = tree_digest(data)

    result = ns_train(data, tmp_path / "out")

    assert result.returncode == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    paragraph = result.stdout.split("mald-nerfstudio error:", 1)[1].strip()
    assert "\n\n" not in paragraph
    assert str(data / "transforms.json") in paragraph and "frames [1], [3]" in " ".join(paragraph.split())
    assert not list((tmp_path / "out").rglob("*.ckpt"))
    assert tree_digest(data) == before
