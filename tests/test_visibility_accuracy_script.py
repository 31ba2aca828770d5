"""benchmarks/visibility_accuracy.py: its comparison of estimated and exact unseen masks on tiny synthetic masks with a
known answer, and the whole script on a run folder whose saved masks are made from the exact ones."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene, observe_training_views

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("visibility_accuracy", REPO / "benchmarks" / "visibility_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _mask(shape, *cells):
    out = np.zeros(shape, dtype=bool)
    for row, col in cells:
        out[row, col] = True
    return out


def test_compare_pools_precision_recall_and_iou_over_views(script):
    """View a: 6 masked pixels, 3 exactly unseen, 2 estimated of which 1 right. View b: 4 masked, 1 exactly unseen,
    3 estimated of which 1 right. Pooled: 10 masked, 4 exactly unseen, 5 estimated, 2 right, 7 in the union."""
    shape = (3, 4)
    mask_a = _mask(shape, (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    exact_a, guess_a = _mask(shape, (0, 0), (0, 1), (0, 2)), _mask(shape, (0, 0), (1, 0))
    mask_b = _mask(shape, (2, 0), (2, 1), (2, 2), (2, 3))
    exact_b, guess_b = _mask(shape, (2, 3)), _mask(shape, (2, 1), (2, 2), (2, 3))
    result = script.compare({"a": guess_a, "b": guess_b}, {"a": exact_a, "b": exact_b}, {"a": mask_a, "b": mask_b})
    assert result["views"] == 2 and result["masked_pixels"] == 10
    assert result["exact_unseen_fraction"] == pytest.approx(0.4)
    assert result["estimated_unseen_fraction"] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(2 / 5) and result["recall"] == pytest.approx(2 / 4)
    assert result["iou"] == pytest.approx(2 / 7) and result["estimated_outside_mask"] == 0
    # a perfect estimate, and an estimate of the whole mask (precision is then the exact unseen share)
    perfect = script.compare({"a": exact_a, "b": exact_b}, {"a": exact_a, "b": exact_b}, {"a": mask_a, "b": mask_b})
    assert perfect["precision"] == perfect["recall"] == perfect["iou"] == 1.0
    whole = script.compare({"a": mask_a, "b": mask_b}, {"a": exact_a, "b": exact_b}, {"a": mask_a, "b": mask_b})
    assert whole["precision"] == pytest.approx(0.4) and whole["recall"] == 1.0 and whole["iou"] == pytest.approx(0.4)


def test_compare_edge_cases(script):
    shape = (2, 2)
    mask, empty = _mask(shape, (0, 0), (0, 1)), np.zeros(shape, dtype=bool)
    nothing_guessed = script.compare({"a": empty}, {"a": _mask(shape, (0, 0))}, {"a": mask})
    assert math.isnan(nothing_guessed["precision"]) and nothing_guessed["recall"] == 0.0
    nothing_unseen = script.compare({"a": _mask(shape, (0, 1))}, {"a": empty}, {"a": mask})
    assert math.isnan(nothing_unseen["recall"]) and nothing_unseen["precision"] == 0.0
    assert math.isnan(script.compare({"a": empty}, {"a": empty}, {"a": mask})["iou"])
    outside = script.compare({"a": _mask(shape, (1, 1))}, {"a": empty}, {"a": mask})
    assert outside["estimated_outside_mask"] == 1
    with pytest.raises(ValueError, match="no estimated unseen mask for view"):
        script.compare({}, {"a": empty}, {"a": mask})
    with pytest.raises(ValueError, match="differ"):
        script.compare({"a": np.zeros((3, 3), bool)}, {"a": empty}, {"a": mask})


def test_script_scores_a_run_folder_against_the_scenes_exact_masks(script, tmp_path):
    """A run folder whose step 149 holds the exact unseen masks and step 199 the whole masks: the first scores 1 / 1
    / 1, the second recall 1 with precision the exact unseen share; masks are matched to views by image stem."""
    config = DemoSceneConfig(seed=0, width=64, height=48, num_train_views=5, num_test_views=2)
    scene = generate_demo_scene(tmp_path / "scene", config)
    exact = observe_training_views(config.setup(), 2, 1)
    assert exact.unseen.any() and (exact.masks & ~exact.unseen).any()  # both parts present, so the check bites
    for step, masks in ((149, exact.unseen), (199, exact.masks)):
        folder = tmp_path / "run" / "unseen_masks" / f"step_{step:06d}"
        folder.mkdir(parents=True)
        for view, mask in zip(exact.views, masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"image{view:03d}.png")
    out = tmp_path / "out"
    script.VisibilityAccuracy(output_dir=out, run=tmp_path / "run", scene=scene, downscale_factor=2,
                              mask_dilation_iterations=1).main()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["step"] for row in rows] == [149, 199]
    share = exact.unseen.sum() / exact.masks.sum()
    for row in rows:
        assert row["views"] == 5 and row["masked_pixels"] == exact.masks.sum()
        assert row["exact_unseen_fraction"] == pytest.approx(share) and row["estimated_outside_mask"] == 0
    assert rows[0]["precision"] == rows[0]["recall"] == rows[0]["iou"] == 1.0
    assert rows[1]["estimated_unseen_fraction"] == 1.0 and rows[1]["recall"] == 1.0
    assert rows[1]["precision"] == pytest.approx(share)
    table = (out / "results.md").read_text()
    assert "| 149 |" in table and "| 199 |" in table and "100.0 %" in table
