"""The benchmark's reports: markdown table in the paper's column order and the image grid."""

from __future__ import annotations


import numpy as np
from PIL import Image

from mald_nerfstudio.eval.benchmark import Benchmark, image_grid, markdown_report


def _record(scene, method, psnr, lpips=None):
    results = {"psnr": psnr, "ssim": 0.5, "masked_psnr": psnr - 5, "masked_ssim": 0.2}
    if lpips is not None:
        results["lpips"] = lpips
    else:
        results["unavailable_metrics"] = {"lpips": "alexnet-owt-7be5be79.pth not found"}
    return {"scene": scene, "method": method, "train_seconds": 120.0, "results": results}


def test_table_averages_over_scenes_marks_missing_metrics_and_failed_runs():
    records = [_record("a", "m1", 20.0, 0.4), _record("b", "m1", 30.0, 0.2), _record("a", "m2", 10.0),
               _record("b", "m2", 12.0), {"scene": "a", "method": "m3", "error": "training failed, see log"},
               _record("b", "m3", 1.0)]
    table = markdown_report(records, ["m1", "m2", "m3"], ["a", "b"], "test")
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert header.split("|")[2:6] == [" LPIPS ", " M-LPIPS ", " FID ", " KID "]
    mean_rows = table.split("Scene a")[0]
    m1 = next(line for line in mean_rows.splitlines() if line.startswith("| m1 "))
    assert " 0.3000 " in m1 and " 25.00 " in m1 and " 2.0 |" in m1  # means over both scenes; 120 s = 2 min
    m2 = next(line for line in mean_rows.splitlines() if line.startswith("| m2 "))
    assert m2.split("|")[2].strip() == "n/a" and " 11.00 " in m2
    assert "failed" in next(line for line in mean_rows.splitlines() if line.startswith("| m3 "))
    assert "- lpips: alexnet-owt-7be5be79.pth not found" in table


def test_grid_shows_ground_truth_then_each_method_with_a_zoom_on_the_mask(tmp_path):
    gt = np.zeros((20, 30, 3), np.uint8)
    gt[..., 1] = 200
    mask = np.zeros((20, 30), np.uint8)
    mask[8:12, 10:16] = 255
    dirs = []
    for i, value in enumerate((50, 250)):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        pred = np.full((20, 30, 3), value, np.uint8)
        Image.fromarray(np.concatenate([gt, pred], axis=1)).save(folder / "eval_img_0000.png")
        Image.fromarray(np.stack([mask] * 3, -1)).save(folder / "eval_inpaint_mask_0000.png")
        dirs.append(folder)
    grid = np.asarray(image_grid(dirs, ["m0", "m1"], view=0))
    assert grid.shape[1] == 3 * 30 + 2 * 4  # three columns and two gaps
    assert grid.shape[0] > 2 * 20  # a full-view row and a zoom row
    top = 14 + 10  # below the label band
    assert tuple(grid[top, 15]) == (0, 200, 0)  # ground truth column
    assert tuple(grid[top, 34 + 15]) == (50, 50, 50) and tuple(grid[top, 68 + 15]) == (250, 250, 250)


def test_preset_values_apply_unless_overridden():
    bench = Benchmark(preset="cpu")
    assert bench.resolved("methods")[0] == "mald-nerf-tiny"
    assert bench.resolved("demo_scenes") == ("demo-seed0", "demo-hidden", "demo-seen", "demo-mostly-seen")
    assert Benchmark(preset="cpu", optimizer_steps=8).resolved("optimizer_steps") == 8
    assert bench.resolved("optimizer_steps") == 1200


def test_every_method_gets_the_same_number_of_nerf_optimizer_steps(tmp_path):
    """Two NeRF steps per iteration (reconstruction, inpainting) run half the iterations of one summed step, and the
    dataset-update schedule, given in optimizer steps, is converted the same way."""
    bench = Benchmark(preset="cpu", output_dir=tmp_path)
    assert bench.iterations("mald-nerf-two-step-tiny") == (600, 2)
    assert bench.iterations("mald-nerf-tiny") == (1200, 1)
    assert bench.iterations("mald-nerf-no-adv-l1-tiny") == (1200, 1)
    assert bench.iterations("nerfacto-masked-tiny") == (1200, 1)

    def flag(command, name):
        return int(command[command.index(name) + 1])

    two = bench._train_command(tmp_path, "mald-nerf-two-step-tiny", tmp_path / "a")
    one = bench._train_command(tmp_path, "mald-nerf-tiny", tmp_path / "b")
    assert flag(two, "--max-num-iterations") == 600 and flag(one, "--max-num-iterations") == 1200
    assert flag(two, "--pipeline.dataset-update.update-every") == 50
    assert flag(one, "--pipeline.dataset-update.update-every") == 100
    assert flag(one, "--pipeline.dataset-update.warmup-steps") == 300  # the warm-up, in optimizer steps too
    visibility = bench._train_command(tmp_path, "mald-nerf-visibility-tiny", tmp_path / "c")
    assert flag(visibility, "--pipeline.dataset-update.warmup-steps") == 300
    assert flag(one, "--pipeline.dataset-update.first-update-step") == 2 * flag(
        two, "--pipeline.dataset-update.first-update-step")
    # A summed step asked for on the command line counts as one step per iteration.
    two_steps = Benchmark(preset="cpu", output_dir=tmp_path, extra_args=("--pipeline.separate-inpainting-step", "True"))
    assert two_steps.iterations("mald-nerf-tiny") == (600, 2)
    # The old form (the same iterations for everyone) is still there, named as such.
    assert Benchmark(preset="cpu", max_num_iterations=5).iterations("nerfacto-masked-tiny") == (5, 1)
