"""The benchmark's scenes: their observed fraction of the hole, read from mald_scene.json and reported per scene in
results.md and results.json, and the demo variants spanning hidden, partly seen and mostly seen holes."""

from __future__ import annotations

import json

import pytest

from mald_nerfstudio.data.auto_dataparser import SCENE_INFO_FILE
from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene, observe_hole
from mald_nerfstudio.eval.benchmark import DEMO_SCENES, Benchmark, markdown_report, scene_observed_fraction


def _record(scene, method, psnr):
    return {"scene": scene, "method": method, "train_seconds": 60.0, "results": {"psnr": psnr, "masked_psnr": psnr}}


def test_report_gives_each_scene_its_observed_fraction_or_na():
    records = [_record("a", "m1", 20.0), _record("b", "m1", 22.0)]
    table = markdown_report(records, ["m1"], ["a", "b"], "test", {"a": 0.2345, "b": None})
    lines = table.splitlines()
    assert "| scene | observed fraction of the hole |" in lines
    assert "| a | 23.4 % |" in lines and "| b | n/a |" in lines
    assert "Scene a (observed fraction of the hole: 23.4 %)" in lines
    assert "Scene b (observed fraction of the hole: n/a)" in lines
    # without fractions the report is as before
    assert "observed fraction" not in markdown_report(records, ["m1"], ["a", "b"], "test")


def test_scene_observed_fraction_reads_mald_scene_json(tmp_path):
    scene = generate_demo_scene(tmp_path / "demo", DemoSceneConfig(width=64, height=48, num_train_views=4,
                                                                   num_test_views=2))
    expected = round(observe_hole(DemoSceneConfig(width=64, height=48, num_train_views=4, num_test_views=2).setup(),
                                  downscale=2).fraction, 4)
    assert scene_observed_fraction(scene) == expected
    older = tmp_path / "older"
    older.mkdir()
    (older / SCENE_INFO_FILE).write_text(json.dumps({"num_test_views": 8}))
    assert scene_observed_fraction(older) is None  # generated before the fraction was written
    assert scene_observed_fraction(tmp_path / "missing") is None


def test_results_json_and_md_carry_each_scene_observed_fraction(tmp_path, monkeypatch):
    seen, unknown = tmp_path / "seen", tmp_path / "unknown"
    for folder in (seen, unknown):
        folder.mkdir()
    (seen / SCENE_INFO_FILE).write_text(json.dumps({"num_test_views": 8, "observed_fraction": 0.75}))
    monkeypatch.setattr(Benchmark, "run_one", lambda self, scene, method: _record(scene.name, method, 20.0))
    Benchmark(preset="cpu", output_dir=tmp_path / "out", scenes=(seen, unknown), methods=("m1",)).main()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["scenes"] == {"seen": {"observed_fraction": 0.75}, "unknown": {"observed_fraction": None}}
    report = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert "| seen | 75.0 % |" in report and "| unknown | n/a |" in report


@pytest.mark.parametrize("name, low, high", [("demo-hidden", 0.0, 0.2), ("demo-seen", 0.2, 0.6),
                                             ("demo-mostly-seen", 0.6, 1.0)])
def test_demo_variants_span_hidden_partly_and_mostly_seen_holes(name, low, high):
    """At 160x120 (the registered geometry, a quarter of the pixels, to keep this quick); at the full 320x240 and
    images_2/ the fractions are 0.087, 0.446 and 0.746."""
    config = DemoSceneConfig(**{**DEMO_SCENES[name], "width": 160, "height": 120})
    assert low <= observe_hole(config.setup(), downscale=2).fraction < high
