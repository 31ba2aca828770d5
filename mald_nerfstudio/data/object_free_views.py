"""How many leading views of a SPIn-NeRF / LLFF folder are object-free (``--num-test-views``), for training and for
``mald-nerf-masks`` alike.

SPIn-NeRF captures its object-free views first: in file-name order the first K images show the scene without the
object and serve only as ground truth. K is, in this order: the number given on the command line; the
``num_test_views`` of a ``mald_scene.json`` in the folder (the demo scene writes one); read off the labels (masks
in ``images*/label/``) when they cover exactly the last images, so the unlabelled first ones are the object-free
views; SPIn-NeRF's own 40 when every image has a label and there are more than 40 (its scenes: 100 images, 40
object-free, each with a label of where the object would be); otherwise 0. Labels that leave gaps are refused:
no rule can tell which views hold the object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from mald_nerfstudio.data.image_io import list_images
from mald_nerfstudio.errors import MaldInputError

SCENE_INFO_FILE = "mald_scene.json"
"""Optional file in a SPIn-NeRF-layout folder (the demo scene writes it) giving {"num_test_views": K}."""
SPINNERF_OBJECT_FREE_VIEWS = 40
"""SPIn-NeRF's object-free views per scene (of 100), used when every image has a label."""


@dataclass(frozen=True)
class ObjectFreeViews:
    """The number of leading object-free views and where it came from."""

    count: int
    """How many views, first in file-name order, are object-free."""
    reason: str
    """Where the number came from, for the console."""


def _image_names(scene: Path) -> List[str]:
    """File names of the first folder of images/, images_N/ (smallest N) that holds images, sorted."""
    folders = [scene / "images"] + sorted((p for p in scene.glob("images_*") if p.name[7:].isdigit()),
                                          key=lambda p: int(p.name[7:]))
    for folder in folders:
        if folder.is_dir():
            images = list_images(folder)
            if images:
                return [p.name for p in images]
    return []


def object_free_views(scene: Path, given: Optional[int] = None) -> ObjectFreeViews:
    """The leading object-free views of the SPIn-NeRF / LLFF folder ``scene`` (module docstring for the rules)."""
    scene = Path(scene)
    if given is not None:
        return ObjectFreeViews(int(given), f"--num-test-views {given}")
    info = scene / SCENE_INFO_FILE
    if info.is_file():
        try:
            count = int(json.loads(info.read_text())["num_test_views"])
        except (ValueError, KeyError, TypeError) as err:
            raise MaldInputError(f"cannot read num_test_views from it ({err})", info,
                                 'write {"num_test_views": K} or delete it') from None
        return ObjectFreeViews(count, f"num_test_views in {info.name}")
    names = _image_names(scene)
    label_folders = sorted(p for p in scene.glob("images*/label") if p.is_dir())
    labelled_stems = {p.stem for folder in label_folders for p in list_images(folder)}
    labelled = [Path(name).stem in labelled_stems for name in names]
    if not names or not any(labelled):
        return ObjectFreeViews(0, "no labels in images*/label/, so no view is taken as object-free")
    where = ", ".join(f"{p.parent.name}/label/" for p in label_folders)
    if all(labelled):
        if len(names) > SPINNERF_OBJECT_FREE_VIEWS:
            return ObjectFreeViews(SPINNERF_OBJECT_FREE_VIEWS,
                                   f"every image has a label in {where}: SPIn-NeRF's first {SPINNERF_OBJECT_FREE_VIEWS}"
                                   " are taken as object-free (pass --num-test-views K if yours differ)")
        return ObjectFreeViews(0, f"every image has a label in {where}: no view is taken as object-free")
    first = labelled.index(True)
    if all(labelled[first:]):
        return ObjectFreeViews(first, f"the labels in {where} cover only the last {len(names) - first} of the "
                                      f"{len(names)} images, so the first {first} are taken as object-free")
    gaps = [name for name, has in zip(names[first:], labelled[first:]) if not has]
    raise MaldInputError(
        f"the labels in {where} leave gaps: {len(gaps)} image(s) after the first labelled one ({names[first]}) have "
        f"none ({', '.join(gaps[:5])}{', ...' if len(gaps) > 5 else ''}), so it is unclear which views show the "
        "object; SPIn-NeRF puts the object-free views first and labels every view with the object",
        scene,
        "add the missing labels, or pass --num-test-views K (the first K images in file-name order are the "
        "object-free views)",
    )
