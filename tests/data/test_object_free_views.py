"""Which leading views of a SPIn-NeRF / LLFF folder are object-free, by the rules of
:mod:`mald_nerfstudio.data.object_free_views`, and the training parser using them."""

from __future__ import annotations

import json

import pytest

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE, object_free_views
from mald_nerfstudio.errors import MaldInputError
from tests.data.test_dataparsers import write_spinnerf_scene


def test_labels_covering_only_the_last_images_make_the_first_ones_object_free(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=8, num_test=3)
    found = object_free_views(scene)
    assert found.count == 3
    assert "last 5 of the 8" in found.reason and "first 3" in found.reason
    parser = MaldDataParserConfig(data=scene).setup()
    assert len(parser.get_dataparser_outputs("train").image_filenames) == 5
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 3


def test_the_given_number_and_mald_scene_json_come_before_the_labels(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=8, num_test=3)
    assert object_free_views(scene, given=0).count == 0
    (scene / SCENE_INFO_FILE).write_text(json.dumps({"num_test_views": 2}))
    assert object_free_views(scene).count == 2
    assert object_free_views(scene, given=1).count == 1


def test_every_image_labelled_gives_spinnerfs_40_only_when_there_are_more(tmp_path):
    assert object_free_views(write_spinnerf_scene(tmp_path / "small", num_views=6, num_test=0)).count == 0
    large = write_spinnerf_scene(tmp_path / "large", num_views=42, num_test=0, width=8, height=6)
    found = object_free_views(large)
    assert found.count == 40 and "--num-test-views" in found.reason


def test_no_labels_means_no_object_free_views(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=4, num_test=4)
    assert object_free_views(scene).count == 0


def test_labels_with_gaps_are_refused_with_a_paragraph(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=6, num_test=2)
    (scene / "images_4" / "label" / "img_004.png").unlink()
    with pytest.raises(MaldInputError) as info:
        object_free_views(scene)
    message = str(info.value)
    assert "img_004.png" in message and str(scene) in message and "--num-test-views" in message
