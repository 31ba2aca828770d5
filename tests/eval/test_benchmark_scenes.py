"""The benchmark's scenes: their observed fraction of the hole for the masks the runs read (the labels dilated as
the data parser dilates them, computed from the generator's parameters in mald_scene.json), reported per scene in
results.md and results.json, the cpu preset's one-iteration mask dilation, and the demo variants spanning hidden,
partly seen and mostly seen holes."""

from __future__ import annotations

import json

import pytest

from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene, observe_hole
from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE
from mald_nerfstudio.eval.benchmark import (
    DEMO_SCENES,
    Benchmark,
    label_mask_observed_fraction,
    markdown_report,
    scene_observed_fraction,
)

SMALL = dict(width=64, height=48, num_train_views=4, num_test_views=2)


def _record(scene, method, psnr):
    return {"scene": scene, "method": method, "train_seconds": 60.0, "results": {"psnr": psnr, "masked_psnr": psnr}}


def test_report_gives_each_scene_its_observed_fraction_or_na():
    records = [_record("a", "m1", 20.0), _record("b", "m1", 22.0)]
    table = markdown_report(records, ["m1"], ["a", "b"], "test", {"a": 0.2345, "b": None}, "MASKS DESCRIBED")
    lines = table.splitlines()
    assert any(line.startswith("Observed fraction of the hole") and "for MASKS DESCRIBED." in line for line in lines)
    assert "| scene | observed fraction of the hole |" in lines
    assert "| a | 23.4 % |" in lines and "| b | n/a |" in lines
    assert "Scene a (observed fraction of the hole: 23.4 %)" in lines
    assert "Scene b (observed fraction of the hole: n/a)" in lines
    # without fractions the report is as before
    assert "observed fraction" not in markdown_report(records, ["m1"], ["a", "b"], "test")


def test_scene_observed_fraction_is_for_the_masks_the_runs_read(tmp_path):
    """Computed from the generator's parameters in mald_scene.json with the parser's dilation; the generator's own
    figure (label masks as written) stays in mald_scene.json under its own name."""
    config = DemoSceneConfig(**SMALL)
    scene = generate_demo_scene(tmp_path / "demo", config)
    exact = {iterations: round(observe_hole(config.setup(), 2, iterations).fraction, 4) for iterations in (0, 1, 5)}
    assert len(set(exact.values())) == 3  # the dilation changes the fraction, so each call below is checked
    for iterations in (0, 1, 5):
        assert scene_observed_fraction(scene, 2, iterations) == exact[iterations]
    assert scene_observed_fraction(scene, 1, 1) == round(observe_hole(config.setup(), 1, 1).fraction, 4)
    assert label_mask_observed_fraction(scene) == exact[0]
    older = tmp_path / "older"
    older.mkdir()
    (older / SCENE_INFO_FILE).write_text(json.dumps({"num_test_views": 8, "observed_fraction": 0.25}))
    assert scene_observed_fraction(older, 2, 1) is None  # no generator parameters: the runs' masks are unknown
    assert label_mask_observed_fraction(older) == 0.25  # the name the generator used before
    assert scene_observed_fraction(tmp_path / "missing", 2, 1) is None
    assert label_mask_observed_fraction(tmp_path / "missing") is None


def test_cpu_preset_dilates_the_masks_once_and_spinnerf_keeps_the_parser_default(tmp_path):
    command = Benchmark(preset="cpu", output_dir=tmp_path)._train_command(tmp_path, "mald-nerf-tiny", tmp_path / "a")
    parser = command[command.index("mald-data"):]
    assert parser == ["mald-data", "--downscale-factor", "2", "--mask-dilation-iterations", "1"]
    assert Benchmark(preset="cpu").mask_dilation() == (5, 1)
    spinnerf = Benchmark(preset="spinnerf", output_dir=tmp_path)
    command = spinnerf._train_command(tmp_path, "nerfacto-masked", tmp_path / "b")
    assert not any(arg.startswith("--mask-dilation") for arg in command)
    assert spinnerf.mask_dilation() == (5, 5)


def test_results_json_and_md_carry_each_scene_observed_fraction_for_the_runs_masks(tmp_path, monkeypatch):
    config = DemoSceneConfig(**SMALL)
    demo, unknown = generate_demo_scene(tmp_path / "demo", config), tmp_path / "unknown"
    unknown.mkdir()
    monkeypatch.setattr(Benchmark, "run_one", lambda self, scene, method: _record(scene.name, method, 20.0))
    Benchmark(preset="cpu", output_dir=tmp_path / "out", scenes=(demo, unknown), methods=("m1",)).main()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    runs_masks = round(observe_hole(config.setup(), 2, 1).fraction, 4)  # cpu preset: images_2/, one iteration
    label_masks = round(observe_hole(config.setup(), 2, 0).fraction, 4)
    assert runs_masks != label_masks
    assert results["scenes"] == {
        "demo": {"observed_fraction": runs_masks, "observed_fraction_label_masks": label_masks},
        "unknown": {"observed_fraction": None, "observed_fraction_label_masks": None},
    }
    assert "5x5 kernel, 1 iteration" in results["observed_fraction_masks"]
    report = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert f"| demo | {100 * runs_masks:.1f} % |" in report and "| unknown | n/a |" in report
    assert any("images_2/label/ dilated by the data parser (5x5 kernel, 1 iteration)" in line for line in report)


def test_demo_scene_regenerated_when_its_recorded_parameters_differ(tmp_path, monkeypatch):
    monkeypatch.setitem(DEMO_SCENES, "demo-test", dict(seed=5, **SMALL))
    bench = Benchmark(preset="cpu", output_dir=tmp_path, demo_scenes=("demo-test",))
    (folder,) = bench.scene_folders()
    first = (folder / "images" / "image000.png").read_bytes()
    stamp = (folder / "poses_bounds.npy").stat().st_mtime_ns
    bench.scene_folders()
    assert (folder / "poses_bounds.npy").stat().st_mtime_ns == stamp  # same parameters: left alone
    monkeypatch.setitem(DEMO_SCENES, "demo-test", dict(seed=6, **SMALL))
    bench.scene_folders()
    assert (folder / "images" / "image000.png").read_bytes() != first
    assert json.loads((folder / SCENE_INFO_FILE).read_text())["scene"]["seed"] == 6


@pytest.mark.parametrize("name, low, high", [("demo-hidden", 0.0, 0.2), ("demo-seed0", 0.2, 0.6),
                                             ("demo-seen", 0.2, 0.6), ("demo-mostly-seen", 0.6, 1.0)])
def test_demo_variants_span_hidden_partly_and_mostly_seen_holes_with_the_cpu_runs_masks(name, low, high):
    """The registered geometry at 320x240, the masks as the cpu preset's runs read them (images_2/, one dilation
    iteration): 0.078, 0.206, 0.379 and 0.669."""
    kernel, iterations = Benchmark(preset="cpu").mask_dilation()
    config = DemoSceneConfig(**DEMO_SCENES[name])
    assert low <= observe_hole(config.setup(), 2, iterations, kernel).fraction < high
