"""Benchmark runner: trains each chosen method on each chosen scene with the same budget and scores it.

The budget is a number of NeRF optimizer steps, the same for every method: a method that takes two steps per
iteration (mald-nerf-two-step's reconstruction and inpainting steps) runs half as many iterations as one that takes
one (nerfacto-masked, mald-nerf's summed step); the dataset-update schedule is given in optimizer steps too and
converted the same way. Each run's iterations and optimizer steps are in ``results.json`` and the tables.

Every run is a real ``ns-train`` followed by ``ns-eval`` on the scene's object-free views, so the numbers are what
a user gets from the same commands. Outputs, under ``--output-dir``:

* ``results.json``: every metric of every (scene, method), the training time, and the metrics that could not be
  computed with the reason;
* ``results.md``: a table per scene and the mean over scenes, in the paper's column order (LPIPS, M-LPIPS, FID,
  KID) followed by PSNR / SSIM (whole image and inside the mask) and training minutes;
* ``grid_<scene>.png``: ground truth | each method on one evaluation view, with a zoom on the inpainted region.

Presets:

* ``cpu``: four generated demo scenes at half resolution (``demo-seed0``, the demo; ``demo-hidden``, a larger
  ball seen from a small camera disc, so almost none of the hole is observed by any training view; ``demo-seen``,
  a wide camera disc, so much of the hole is observed from other views; ``demo-mostly-seen``, a small ball and the
  widest disc, two thirds of the hole observed), the CPU-sized methods with the exemplar
  inpainter (mald-nerf-tiny, its visibility-aware and two-step forms, the pixel-loss baseline without adversarial
  loss, and nerfacto on the observed pixels only), 1200 NeRF optimizer steps each (1200 iterations of
  mald-nerf-tiny, 600 of the two-step form); about 2 hours on 2 CPU cores. The parser dilates the masks by one
  5x5 iteration (``--mask-dilation-iterations 1``, about 2 px): the generated masks are exact silhouettes (+2 px),
  and SPIn-NeRF's 5 iterations, meant for hand-drawn masks, would add about 10 px around a hole in a 160x120 image.
* ``spinnerf``: the SPIn-NeRF dataset on a GPU (pass the scene folders with ``--scenes``): mald-nerf and the
  baselines at factor 4 with 40 object-free test views, 30k NeRF optimizer steps each (mald-nerf's 30k
  iterations of one summed step; a two-step method runs 15k). Needs the LDM, LPIPS and Inception weights (see README).

Finished runs are reused, so an interrupted benchmark continues where it stopped.

Each scene's *observed fraction of the hole* (the share of its test views' masked pixels whose background some
training view sees unoccluded outside its own mask) is computed from the generator's exact geometry for the masks
the runs read: the labels at the run's downscale factor, dilated as the data parser dilates them
(:func:`~mald_nerfstudio.data.demo_scene.observe_hole` with ``mask_dilation_iterations``); n/a for scenes that
are not generated demo scenes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import tyro
from PIL import Image, ImageDraw
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mald_nerfstudio.errors import MaldInputError, install_run_hooks
from mald_nerfstudio.eval.evaluate import nan_mean_std

CONSOLE = Console(width=120)

PRESETS: Dict[str, Dict] = {
    "cpu": dict(
        methods=("mald-nerf-tiny", "mald-nerf-visibility-tiny", "mald-nerf-two-step-tiny", "mald-nerf-no-adv-l1-tiny",
                 "nerfacto-masked-tiny"),
        optimizer_steps=1200,
        max_num_iterations=None,
        # A short budget: earlier dataset updates and more views per update so each view is updated, and one
        # warm-up on the observed pixels for every method (visibility-aware inpainting starts at its end; the
        # whole-mask methods then inpaint from scratch, as at strength 1 the render is ignored). In optimizer
        # steps: warm-up 300, first update 400, then every 100 (iterations 150, 200 and 50 of a two-step method).
        update_schedule=(("warmup-steps", 300), ("first-update-step", 400), ("update-every", 100)),
        downscale_factor=2,
        num_test_views=None,
        demo_scenes=("demo-seed0", "demo-hidden", "demo-seen", "demo-mostly-seen"),
        extra_args=("--machine.device-type", "cpu", "--pipeline.dataset-update.views-per-update", "4"),
        # The generated masks are exact silhouettes (+2 px): one dilation iteration (+2 px at half resolution), not
        # SPIn-NeRF's 5 for hand-drawn masks (+10 px, a sixth of a 160 px image around the hole).
        parser_args=("--mask-dilation-iterations", "1"),
    ),
    "spinnerf": dict(
        methods=("mald-nerf", "spinnerf-style", "inpaintnerf360-style", "nerfacto-masked", "mald-nerf-no-custom"),
        optimizer_steps=30000,
        max_num_iterations=None,
        update_schedule=None,
        downscale_factor=4,
        num_test_views=40,
        demo_scenes=(),
        extra_args=(),
        parser_args=(),  # the parser's default dilation: SPIn-NeRF's 5x5 kernel, 5 iterations
    ),
}
"""Defaults of each preset; every one can be overridden on the command line."""

TABLE_COLUMNS = (
    ("lpips", "LPIPS", 4), ("m_lpips", "M-LPIPS", 4), ("fid", "FID", 2), ("kid", "KID", 4),
    ("m_swd", "SWD (mask, proxy)", 1), ("m_rgb_swd", "RGB patch SWD (mask)", 1),
    ("m_sharpness", "sharpness (mask, proxy)", 2), ("swd", "SWD (proxy)", 1),
    ("psnr", "PSNR", 2), ("masked_psnr", "PSNR (mask)", 2), ("unmasked_psnr", "PSNR (outside)", 2),
    ("ssim", "SSIM", 3), ("masked_ssim", "SSIM (mask)", 3),
)

DEMO_SCENES: Dict[str, Dict] = {
    "demo-seed0": dict(seed=0),
    "demo-seed1": dict(seed=1),
    "demo-hidden": dict(seed=1, object_radius=0.55, camera_disc_radius=0.12),
    "demo-seen": dict(seed=2, camera_disc_radius=0.6),
    # A small ball seen from the widest disc whose lowest camera stays above the floor (about 1.0): about two
    # thirds of the hole is observed by some training view, with the masks the cpu preset's runs read.
    "demo-mostly-seen": dict(seed=3, object_radius=0.2, camera_disc_radius=1.0),
    # The light low on the left: the ball casts a hard shadow onto the floor to its right (mald-nerf-masks --shadow).
    "demo-shadow": dict(seed=0, light_position=(-2.2, 1.9, 1.2), cast_shadow=True),
}
"""Generated scenes the benchmark knows by name (DemoSceneConfig fields). Observed fraction of the hole (share of
the test views' masked pixels at images_2/ that some training view sees), with the masks the cpu preset's runs
read (labels dilated by one 5x5 iteration): demo-seed0 0.206, demo-seed1 0.205, demo-hidden 0.078, demo-seen 0.379,
demo-mostly-seen 0.669; with the label masks as written (mald_scene.json's observed_fraction_label_masks): 0.234,
0.235, 0.087, 0.446, 0.789; with the parser's default 5 iterations: 0.168, 0.160, 0.067, 0.280, 0.516."""


@dataclass
class Benchmark:
    """Train and evaluate methods on scenes with one budget; write JSON, a markdown table and image grids."""

    preset: Literal["cpu", "spinnerf"] = "cpu"
    """Methods, scenes, budget and resolution: cpu (demo scenes, 2 cores) or spinnerf (SPIn-NeRF data, GPU)."""
    output_dir: Path = Path("benchmark")
    """Where runs, results.json, results.md and the grids go."""
    scenes: Tuple[Path, ...] = ()
    """Scene folders (SPIn-NeRF layout or nerfstudio format). Empty with the cpu preset: generate demo scenes."""
    methods: Tuple[str, ...] = ()
    """Registered method names to compare (empty: the preset's)."""
    optimizer_steps: Optional[int] = None
    """NeRF optimizer steps of every run, the budget all methods share (None: the preset's)."""
    max_num_iterations: Optional[int] = None
    """Iterations of every run whatever its steps per iteration, in place of the step budget (None: use the budget)."""
    downscale_factor: Optional[int] = None
    """Image downscale factor passed to the data parser (None: the preset's)."""
    num_test_views: Optional[int] = None
    """Object-free views at the start of a SPIn-NeRF-layout scene (None: the preset's, or mald_scene.json)."""
    demo_scenes: Tuple[str, ...] = ()
    """Generated scenes without --scenes: demo-seed0, demo-seed1, demo-hidden, demo-seen (empty: the preset's)."""
    extra_args: Tuple[str, ...] = ()
    """Extra ns-train arguments for every run (placed before the data-parser arguments)."""
    grid_view: int = 0
    """Index of the evaluation view shown in the grids."""
    timeout_minutes: float = 240.0
    """Give up on a single run after this long."""
    reevaluate: bool = False
    """Run ns-eval again on finished runs (their training is reused), e.g. after the metrics changed."""

    def resolved(self, key: str):
        """This run's value of a setting: the command line's, else the preset's."""
        value = getattr(self, key)
        return PRESETS[self.preset][key] if value in (None, ()) else value

    # ---------------------------------------------------------------- scenes
    def scene_folders(self) -> List[Path]:
        """The scenes to run on (demo scenes are generated on first use)."""
        if self.scenes:
            for scene in self.scenes:
                if not scene.is_dir():
                    raise MaldInputError("scene folder not found", scene, "pass existing folders to --scenes")
            return list(self.scenes)
        names = self.resolved("demo_scenes")
        if not names:
            raise MaldInputError(
                f"the {self.preset} preset needs scene folders",
                self.output_dir,
                "pass --scenes DIR [DIR ...] (e.g. the ten SPIn-NeRF scenes)",
            )
        from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene, scene_config_of

        unknown = [name for name in names if name not in DEMO_SCENES]
        if unknown:
            raise MaldInputError(
                f"unknown demo scene(s) {', '.join(unknown)}", fix=f"choose from {', '.join(DEMO_SCENES)}"
            )
        folders = []
        for name in names:
            folder = self.output_dir / "scenes" / name
            config = DemoSceneConfig(**DEMO_SCENES[name])
            if not (folder / "poses_bounds.npy").is_file():
                generate_demo_scene(folder, config, overwrite=True)
            elif scene_config_of(folder) != config:
                # Generated with other parameters, or before they were recorded: the same parameters give the same
                # files, so this only changes a scene whose parameters changed.
                generate_demo_scene(folder, config, overwrite=True)
                if (self.output_dir / "runs" / name).is_dir():
                    CONSOLE.print(f"[bold yellow]Regenerated {folder} from DEMO_SCENES['{name}'] (its parameters "
                                  "differed or were not recorded). Its finished runs in "
                                  f"{self.output_dir / 'runs' / name} are reused: delete them if the scene changed.")
            folders.append(folder)
        return folders

    # ------------------------------------------------------------------ runs
    def _run_dir(self, scene: Path, method: str) -> Path:
        return self.output_dir / "runs" / scene.name / method

    def iterations(self, method: str) -> Tuple[int, int]:
        """(iterations, NeRF optimizer steps per iteration) of ``method``'s runs under this benchmark's budget."""
        per_iteration = steps_per_iteration(method, self.extra_args)
        if self.max_num_iterations is not None:
            return self.max_num_iterations, per_iteration
        return max(1, self.resolved("optimizer_steps") // per_iteration), per_iteration

    def _parser_args(self) -> List[str]:
        """The data-parser arguments of every run: ``mald-data``, the downscale factor, the test views and the
        preset's ``parser_args``."""
        parser_args = ["mald-data"]
        if self.resolved("downscale_factor") is not None:
            parser_args += ["--downscale-factor", str(self.resolved("downscale_factor"))]
        if self.resolved("num_test_views") is not None:
            parser_args += ["--num-test-views", str(self.resolved("num_test_views"))]
        return parser_args + list(PRESETS[self.preset].get("parser_args", ()))

    def mask_dilation(self) -> Tuple[int, int]:
        """(kernel side, iterations) of the parser's mask dilation in this benchmark's runs, for SPIn-NeRF-layout
        scenes such as the generated demo scenes (unset: the parser's defaults, 5 and 5)."""
        from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig

        args = self._parser_args()
        kernel = _flag_value(args, "--mask-dilation-kernel")
        iterations = _flag_value(args, "--mask-dilation-iterations")
        return (SpinNerfDataParserConfig.mask_dilation_kernel if kernel is None else int(kernel),
                SpinNerfDataParserConfig.mask_dilation_iterations if iterations is None else int(iterations))

    def observed_masks(self) -> str:
        """Which masks the observed fractions are for (a sentence fragment for the reports)."""
        kernel, iterations = self.mask_dilation()
        factor = self.resolved("downscale_factor")
        folder = "images_N/" if factor is None else ("images/" if factor == 1 else f"images_{factor}/")
        dilation = (f"dilated by the data parser ({kernel}x{kernel} kernel, {iterations} iteration"
                    f"{'' if iterations == 1 else 's'})" if iterations > 0 and kernel > 1 else "not dilated further")
        return f"the masks the runs read: {folder}label/ {dilation}"

    def observed_fraction(self, scene: Path) -> Optional[float]:
        """The scene's observed fraction of the hole with the masks this benchmark's runs read (None: not a
        generated demo scene), from the generator's parameters in its mald_scene.json."""
        kernel, iterations = self.mask_dilation()
        return scene_observed_fraction(scene, self.resolved("downscale_factor"), iterations, kernel)

    def _train_command(self, scene: Path, method: str, run_dir: Path) -> List[str]:
        parser_args = self._parser_args()
        iterations, per_iteration = self.iterations(method)
        schedule: List[str] = []
        if PRESETS[self.preset]["update_schedule"] is not None:
            for name, optimizer_steps in PRESETS[self.preset]["update_schedule"]:
                schedule += [f"--pipeline.dataset-update.{name}", str(max(1, optimizer_steps // per_iteration))]
        return [
            "ns-train", method, "--data", str(scene), "--output-dir", str(run_dir), "--timestamp", "benchmark",
            "--experiment-name", scene.name, "--max-num-iterations", str(iterations),
            "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
            *PRESETS[self.preset]["extra_args"], *schedule, *self.extra_args, *parser_args,
        ]

    def _execute(self, command: List[str], log: Path) -> Tuple[bool, float]:
        start = time.time()
        with open(log, "w", encoding="utf8") as handle:
            handle.write(" ".join(command) + "\n\n")
            handle.flush()
            try:
                done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=self.timeout_minutes * 60,
                                      env={**os.environ, "PYTHONWARNINGS": "ignore"})
                ok = done.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
        return ok, time.time() - start

    def run_one(self, scene: Path, method: str) -> Dict:
        """Train and evaluate one method on one scene (reusing a finished run)."""
        run_dir = self._run_dir(scene, method)
        record_file = run_dir / "record.json"
        if record_file.is_file():
            record = json.loads(record_file.read_text())
            if not self.reevaluate:
                return record
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            iterations, per_iteration = self.iterations(method)
            record = {"scene": scene.name, "method": method, "iterations": iterations,
                      "optimizer_steps": iterations * per_iteration}
            ok, seconds = self._execute(self._train_command(scene, method, run_dir), run_dir / "train.log")
            record["train_seconds"] = round(seconds, 1)
            if not ok:
                record["error"] = f"training failed, see {run_dir / 'train.log'}"
                return record
        configs = sorted(run_dir.rglob("config.yml"))
        if not configs:
            record["error"] = f"training failed, see {run_dir / 'train.log'}"
            return record
        eval_json = run_dir / "eval.json"
        ok, seconds = self._execute(
            ["ns-eval", "--load-config", str(configs[0]), "--output-path", str(eval_json),
             "--render-output-path", str(run_dir / "renders")],
            run_dir / "eval.log",
        )
        record["eval_seconds"] = round(seconds, 1)
        if not ok or not eval_json.is_file():
            record["error"] = f"evaluation failed, see {run_dir / 'eval.log'}"
            return record
        record["results"] = json.loads(eval_json.read_text())["results"]
        record_file.write_text(json.dumps(record, indent=2))
        return record

    def main(self) -> None:
        """Run every (scene, method) and write the reports."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        scenes, methods = self.scene_folders(), list(self.resolved("methods"))
        records: List[Dict] = []
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=CONSOLE) as progress:
            task = progress.add_task("[green]Benchmark runs", total=len(scenes) * len(methods))
            for scene in scenes:
                for method in methods:
                    progress.update(task, description=f"[green]{scene.name}: {method}")
                    record = self.run_one(scene, method)
                    records.append(record)
                    status = record.get("error") or f"PSNR {record['results'].get('psnr', math.nan):.2f}"
                    progress.console.print(f"{scene.name} / {method}: {status}")
                    progress.advance(task)
        observed = {scene.name: self.observed_fraction(scene) for scene in scenes}
        (self.output_dir / "results.json").write_text(json.dumps({
            "preset": self.preset, "optimizer_steps": self.resolved("optimizer_steps"),
            "max_num_iterations": self.max_num_iterations,
            "downscale_factor": self.resolved("downscale_factor"),
            "parser_args": self._parser_args(),
            "observed_fraction_masks": self.observed_masks(),
            "scenes": {scene.name: {"observed_fraction": observed[scene.name],
                                    "observed_fraction_label_masks": label_mask_observed_fraction(scene)}
                       for scene in scenes},
            "runs": records}, indent=2))
        table = markdown_report(records, methods, [s.name for s in scenes], self.describe(), observed,
                                self.observed_masks())
        (self.output_dir / "results.md").write_text(table)
        for scene in scenes:
            grid = image_grid([self._run_dir(scene, m) / "renders" for m in methods], methods, self.grid_view)
            if grid is not None:
                grid.save(self.output_dir / f"grid_{scene.name}.png")
        CONSOLE.print(table)
        CONSOLE.print(f"Wrote {self.output_dir / 'results.json'}, results.md and grid_*.png")

    def describe(self) -> str:
        """One line saying what was run."""
        budget = (f"{self.max_num_iterations} iterations per run" if self.max_num_iterations is not None else
                  f"{self.resolved('optimizer_steps')} NeRF optimizer steps per run (iterations: that over the "
                  "method's steps per iteration)")
        return (f"preset `{self.preset}`, {budget}, downscale factor {self.resolved('downscale_factor')}, data "
                f"parser `{' '.join(self._parser_args())}`, command: `{' '.join(sys.argv)}`")


@functools.lru_cache(maxsize=None)
def _registered_methods() -> Dict:
    """nerfstudio's registered methods, discovered once per process (it imports every plugin)."""
    from nerfstudio.plugins.registry import discover_methods

    return discover_methods()[0]


def registered_pipeline(method: str):
    """The pipeline config of a method registered with nerfstudio (``ns-train METHOD``)."""
    methods = _registered_methods()
    if method not in methods:
        raise MaldInputError(f"unknown method {method}", fix=f"choose from {', '.join(sorted(methods))}")
    return methods[method].pipeline


def steps_per_iteration(method: str, extra_args: Tuple[str, ...] = ()) -> int:
    """NeRF optimizer steps per iteration of a registered method (``MaldPipelineConfig.nerf_steps_per_iteration``),
    with a ``--pipeline.separate-inpainting-step`` among the extra arguments taken into account; 1 for a method
    that is not ours."""
    pipeline = registered_pipeline(method)
    if not hasattr(pipeline, "nerf_steps_per_iteration"):
        return 1
    flag = "--pipeline.separate-inpainting-step"
    if flag in extra_args:
        value = extra_args[extra_args.index(flag) + 1] if extra_args.index(flag) + 1 < len(extra_args) else "True"
        pipeline = replace(pipeline, separate_inpainting_step=value.lower() in ("true", "1", "yes"))
    return pipeline.nerf_steps_per_iteration()


def _cell(value: Optional[float], digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _flag_value(args: List[str], flag: str) -> Optional[str]:
    """The value of the last ``flag VALUE`` or ``flag=VALUE`` in ``args`` (None: absent)."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def scene_observed_fraction(folder: Path, downscale_factor: Optional[int], mask_dilation_iterations: int,
                            mask_dilation_kernel: int = 5) -> Optional[float]:
    """Observed fraction of a generated scene's hole (share of its test views' masked pixels that some training
    view sees unoccluded outside its own mask) for the masks a run reads with ``--downscale-factor`` (None: the
    parser's choice, images/ for the demo's sizes) and ``--mask-dilation-iterations`` / ``--mask-dilation-kernel``:
    :func:`~mald_nerfstudio.data.demo_scene.observe_hole` on the scene rebuilt from the generator's parameters in
    its mald_scene.json, rounded to 4 digits. None when the folder holds no such parameters (not a generated demo
    scene, or one generated before they were written)."""
    from mald_nerfstudio.data.demo_scene import observe_hole, scene_config_of

    config = scene_config_of(Path(folder))
    if config is None:
        return None
    if downscale_factor is None:  # the parser's choice: the smallest factor whose long edge fits 1008 px
        downscale_factor = 1 if max(config.width, config.height) <= 1008 else 2
    observation = observe_hole(config.setup(), downscale_factor, mask_dilation_iterations, mask_dilation_kernel)
    return round(observation.fraction, 4)


def label_mask_observed_fraction(folder: Path) -> Optional[float]:
    """The observed fraction the generator wrote into the folder's mald_scene.json, for the label masks as written
    at images_2/ (before the parser's dilation); None when there is none."""
    from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE

    try:
        info = json.loads((Path(folder) / SCENE_INFO_FILE).read_text())
        value = info.get("observed_fraction_label_masks", info.get("observed_fraction"))  # older scenes: the latter
        return None if value is None else float(value)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _observed(value: Optional[float]) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def markdown_report(records: List[Dict], methods: List[str], scenes: List[str], description: str,
                    observed_fractions: Optional[Dict[str, Optional[float]]] = None,
                    observed_masks: str = "the masks the runs read") -> str:
    """Markdown tables (mean over scenes, then per scene) in the paper's column order; lower LPIPS/FID/KID is
    better, higher PSNR/SSIM is better; 'n/a' marks a metric that could not be computed (reasons below). With
    ``observed_fractions`` (scene name to :func:`scene_observed_fraction`), a table of the scenes' observed fractions
    of the hole, for ``observed_masks`` (:meth:`Benchmark.observed_masks`), follows the first line, and each scene's
    heading gives its own ('n/a' where unknown)."""
    by_key = {(r["scene"], r["method"]): r for r in records}
    header = "| method | " + " | ".join(c[1] for c in TABLE_COLUMNS) + " | iterations (optimizer steps) | train min |"
    rule = "|---" * (len(TABLE_COLUMNS) + 3) + "|"

    def rows(scene_names: List[str]) -> List[str]:
        lines = [header, rule]
        for method in methods:
            runs = [by_key.get((s, method)) for s in scene_names]
            if any(r is None or "error" in r for r in runs):
                errors = [r.get("error", "") for r in runs if r is not None and "error" in r]
                lines.append(f"| {method} | " + " | ".join(["failed"] * len(TABLE_COLUMNS)) + f" | | {errors[:1]} |")
                continue
            cells = [_cell(nan_mean_std([r["results"].get(key, math.nan) for r in runs])[0], digits)
                     for key, _, digits in TABLE_COLUMNS]
            minutes = nan_mean_std([r["train_seconds"] / 60 for r in runs])[0]
            budget = f"{runs[0].get('iterations', '?')} ({runs[0].get('optimizer_steps', '?')})"
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {budget} | {minutes:.1f} |")
        return lines

    out = [f"Benchmark: {description}", ""]
    if observed_fractions is not None:
        out += ["Observed fraction of the hole: the share of the test views' masked pixels whose background some "
                "training view sees unoccluded outside its own mask (generated scenes, exact geometry), for "
                f"{observed_masks}.", "",
                "| scene | observed fraction of the hole |", "|---|---|"]
        out += [f"| {scene} | {_observed(observed_fractions.get(scene))} |" for scene in scenes] + [""]
    out += [f"Mean over {len(scenes)} scene(s): {', '.join(scenes)}", ""]
    out += rows(scenes)
    if len(scenes) > 1:
        for scene in scenes:
            heading = f"Scene {scene}"
            if observed_fractions is not None:
                heading += f" (observed fraction of the hole: {_observed(observed_fractions.get(scene))})"
            out += ["", heading, ""] + rows([scene])
    reasons = {}
    for record in records:
        reasons.update(record.get("results", {}).get("unavailable_metrics", {}))
    if reasons:
        out += ["", "Metrics not computed (n/a):", ""]
        out += [f"- {name}: {reason}" for name, reason in sorted(reasons.items())]
    return "\n".join(out) + "\n"


def _label(image: Image.Image, text: str) -> Image.Image:
    band = 14
    canvas = Image.new("RGB", (image.width, image.height + band), (255, 255, 255))
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((3, 1), text, fill=(0, 0, 0))
    return canvas


def image_grid(render_dirs: List[Path], names: List[str], view: int) -> Optional[Image.Image]:
    """Ground truth | each method on one eval view (from ns-eval's renders), with a zoom on the mask's region."""
    columns: List[Tuple[str, np.ndarray]] = []
    mask = None
    for folder, name in zip(render_dirs, names):
        combined = folder / f"eval_img_{view:04d}.png"
        if not combined.is_file():
            continue
        pair = np.asarray(Image.open(combined).convert("RGB"))
        half = pair.shape[1] // 2
        if not columns:
            columns.append(("ground truth", pair[:, :half]))
            mask_file = folder / f"eval_inpaint_mask_{view:04d}.png"
            if mask_file.is_file():
                mask = np.asarray(Image.open(mask_file).convert("L")) > 127
        columns.append((name, pair[:, half:]))
    if not columns:
        return None
    tiles = [_label(Image.fromarray(img), name) for name, img in columns]
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        pad = max(8, int(0.4 * max(np.ptp(ys), np.ptp(xs))))
        top, bottom = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
        left, right = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
        width = columns[0][1].shape[1]
        zooms = []
        for name, img in columns:
            crop = Image.fromarray(img[top:bottom, left:right])
            zooms.append(_label(crop.resize((width, max(1, round(crop.height * width / crop.width))),
                                            Image.Resampling.NEAREST), f"{name} (zoom)"))
        tiles = [Image.fromarray(np.concatenate([np.asarray(a), np.asarray(b)], axis=0)) for a, b in zip(tiles, zooms)]
    height = max(t.height for t in tiles)
    grid = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), (255, 255, 255))
    x = 0
    for tile in tiles:
        grid.paste(tile, (x, 0))
        x += tile.width + 4
    return grid


def entrypoint() -> None:
    """``mald-nerf-benchmark``."""
    install_run_hooks()
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(Benchmark).main()


if __name__ == "__main__":
    entrypoint()
