"""How accurate a run's unseen masks are: the masks visibility-aware inpainting estimated from the NeRF's depth
against the exact ones of a generated demo scene. Not a test.

A ``mald-nerf`` run with visibility on saves, at every (re)computation, the unseen part of each masked training
view's mask (``<run>/unseen_masks/step_NNNNNN/<image stem>.png``, 0/255 at the training resolution): the pixels no
other training view saw, by the NeRF's rendered depth, cleaned and slightly dilated. On a scene made by
``mald-nerf-demo-scene`` the exact answer is known: a pixel of training view i's mask (as the data parser reads it,
dilated) is *seen* when its background point (the ball absent) lies inside, unoccluded and outside the mask of at
least one other training view (:func:`mald_nerfstudio.data.demo_scene.observe_training_views`, the definition the
observed fraction of the test views' holes uses). For every saved step this script reports, pooled over the masked
training views, the exact and the estimated unseen share of the masked pixels, precision and recall of the
estimated unseen pixels against the exact ones, and their IoU; also the IoU against the exact unseen mask cleaned
and dilated as the run cleans its own (what a perfect depth would have given). Writes ``results.json`` and
``results.md`` into the output folder.

    # score an existing run (the scene folder is read from its config.yml unless --scene is given)
    python benchmarks/visibility_accuracy.py --output-dir /tmp/visibility --run RUN_FOLDER
    # generate demo-seen and train one mald-nerf-tiny run on it first (about 5-8 minutes on 2 CPU cores)
    OMP_NUM_THREADS=1 python benchmarks/visibility_accuracy.py --output-dir /tmp/visibility --train
    # also recompute the unseen masks from the final checkpoint at other depth tolerances
    python benchmarks/visibility_accuracy.py --output-dir /tmp/visibility --run RUN_FOLDER --tolerances 0.02 0.1

With ``--train`` the run is ``ns-train mald-nerf-tiny`` on the CPU for 600 iterations with the visibility masks
computed at the end of a 150-step warm-up (step 149) and again at every dataset update from step 200 on (200, 250,
..., 550), read at half resolution with one mask-dilation iteration, as the CPU benchmark reads its demo scenes
(TRAIN_ARGS below); on demo-seen it took 26 minutes on 2 shared CPU cores. ``--tolerances`` loads the final
checkpoint (``eval_setup``, as ns-eval does; the proposal sampler is then fully annealed), renders every training
view's depth once (about 2 minutes there) and recomputes the masks at each tolerance, cleaned as in training.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import tyro
from PIL import Image
from rich.console import Console
from rich.table import Table

from mald_nerfstudio.data.demo_scene import (
    DemoSceneConfig,
    generate_demo_scene,
    observe_training_views,
    scene_config_of,
)
from mald_nerfstudio.eval.benchmark import DEMO_SCENES

CONSOLE = Console(width=120)

TRAIN_ARGS = (
    "--max-num-iterations", "600", "--pipeline.visibility.recompute-every", "50",
    "--pipeline.dataset-update.warmup-steps", "150", "--pipeline.dataset-update.first-update-step", "200",
    "--pipeline.dataset-update.update-every", "50", "--pipeline.dataset-update.views-per-update", "4",
    "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True", "--machine.device-type", "cpu",
)
"""ns-train arguments of ``--train`` (before the data parser's)."""
PARSER_ARGS = ("mald-data", "--downscale-factor", "2", "--mask-dilation-iterations", "1")
"""The data parser and its arguments of ``--train``: the CPU benchmark's (half resolution, one dilation iteration)."""


# ----------------------------------------------------------------------------------------------- the comparison
def compare(estimated: Mapping[str, np.ndarray], exact: Mapping[str, np.ndarray],
            masks: Mapping[str, np.ndarray]) -> Dict:
    """Score estimated unseen masks against exact ones, pooled over the views (all bool [H, W], keyed by view).

    Returns the number of masked pixels, the exact and estimated unseen shares of them, precision (share of the
    estimated unseen pixels that are exactly unseen), recall (share of the exactly unseen pixels estimated unseen),
    IoU, and the estimated unseen pixels outside the mask (0 unless the masks differ). Precision is NaN when
    nothing is estimated unseen, recall when nothing is exactly unseen, IoU when neither has a pixel."""
    missing = sorted(set(exact) - set(estimated))
    if missing:
        raise ValueError(f"no estimated unseen mask for view(s) {', '.join(missing)}")
    masked = unseen = both = either = found = outside = 0
    for view, truth in exact.items():
        guess, mask = np.asarray(estimated[view], bool), np.asarray(masks[view], bool)
        truth = np.asarray(truth, bool)
        if not guess.shape == truth.shape == mask.shape:
            raise ValueError(f"view {view}: estimated {guess.shape}, exact {truth.shape}, mask {mask.shape} differ")
        masked += int(mask.sum())
        unseen += int(truth.sum())
        found += int(guess.sum())
        both += int((guess & truth).sum())
        either += int((guess | truth).sum())
        outside += int((guess & ~mask).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"views": len(exact), "masked_pixels": masked, "exact_unseen_fraction": ratio(unseen, masked),
            "estimated_unseen_fraction": ratio(found, masked), "precision": ratio(both, found),
            "recall": ratio(both, unseen), "iou": ratio(both, either), "estimated_outside_mask": outside}


def read_step_masks(folder: Path) -> Dict[str, np.ndarray]:
    """A step folder's saved unseen masks, by image stem (bool [H, W]: nonzero = unseen)."""
    return {path.stem: np.asarray(Image.open(path).convert("L")) > 127 for path in sorted(folder.glob("*.png"))}


def step_folders(run: Path) -> List[Tuple[int, Path]]:
    """(step, folder) of every ``unseen_masks/step_NNNNNN`` under ``run``, by step."""
    folders = [p for p in run.rglob("unseen_masks/step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted((int(p.name[5:]), p) for p in folders)


# ----------------------------------------------------------------------------------------------- the exact masks
@dataclass
class ExactMasks:
    """The exact unseen masks of a demo scene's training views, for the masks a run reads."""

    masks: Dict[str, np.ndarray]
    """Each training view's mask as the parser reads it (by image stem)."""
    unseen: Dict[str, np.ndarray]
    """Its exact unseen part: no other training view sees the background there."""


def exact_masks(scene_folder: Path, downscale: int, dilation_iterations: int, dilation_kernel: int) -> ExactMasks:
    """The exact unseen masks of ``scene_folder``'s training views, from the generator's parameters in its
    mald_scene.json, at the run's downscale factor and mask dilation."""
    config = scene_config_of(scene_folder)
    if config is None:
        raise SystemExit(f"{scene_folder} holds no demo scene parameters (mald_scene.json 'scene'): generate it "
                         "with mald-nerf-demo-scene")
    scene = config.setup()
    observation = observe_training_views(scene, downscale, dilation_iterations, dilation_kernel)
    folder = scene_folder / ("images" if downscale == 1 else f"images_{downscale}")
    stems = [p.stem for p in sorted(folder.glob("*.png"))]  # file order: the views' indices
    if len(stems) != scene.num_views:
        raise SystemExit(f"{folder} holds {len(stems)} images, the scene's parameters say {scene.num_views}")
    names = [stems[int(view)] for view in observation.views]
    return ExactMasks(masks=dict(zip(names, observation.masks)), unseen=dict(zip(names, observation.unseen)))


def clean_like_the_run(exact: ExactMasks, cleaning_radius: float, dilation: float) -> Dict[str, np.ndarray]:
    """The exact unseen masks cleaned and dilated as the run cleans its estimate (``clean_unseen``)."""
    from mald_nerfstudio.pipeline.visibility import _pixels, clean_unseen

    out = {}
    for view, unseen in exact.unseen.items():
        h, w = unseen.shape
        out[view] = clean_unseen(unseen, exact.masks[view], _pixels(cleaning_radius, h, w), _pixels(dilation, h, w))
    return out


# ----------------------------------------------------------------------------------------------- the run
def run_config(run: Path):
    """The run's TrainerConfig (its config.yml), or None."""
    import yaml

    configs = sorted(run.rglob("config.yml"))
    if not configs:
        return None, None
    return yaml.load(configs[0].read_text(), Loader=yaml.Loader), configs[0]


def recompute_at_tolerances(config_path: Path, tolerances: Tuple[float, ...], stems: List[str]) -> Dict[float, Dict]:
    """Unseen masks recomputed offline from the run's final checkpoint at each depth tolerance (by image stem)."""
    from dataclasses import replace

    from nerfstudio.utils.eval_utils import eval_setup

    from mald_nerfstudio.pipeline.visibility import render_depths, unseen_masks

    _config, pipeline, _checkpoint, step = eval_setup(config_path, test_mode="val")
    manager = pipeline.datamanager
    num_views, height, width = manager.masks.shape
    CONSOLE.print(f"Rendering the depth of {num_views} training views at step {step}")
    depths = render_depths(pipeline.model, manager.train_ray_generator, range(num_views), height, width)
    views = manager.views_with_masks().tolist()
    names = [Path(manager.train_dataset.image_filenames[v]).stem for v in views]
    out = {}
    for tolerance in tolerances:
        visibility = replace(pipeline.config.visibility, depth_tolerance=tolerance)
        fill = unseen_masks(manager.train_dataset.cameras, depths, manager.masks.cpu(), views, visibility)
        out[tolerance] = {"step": step, "masks": {n: m.numpy() for n, m in zip(names, fill) if n in stems}}
    return out


def _run(command: List[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w", encoding="utf8") as handle:
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed, see {log}")
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- the report
def _pct(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f} %"


COLUMNS = (("exact_unseen_fraction", "exact unseen"), ("estimated_unseen_fraction", "estimated unseen"),
           ("precision", "precision"), ("recall", "recall"), ("iou", "IoU"),
           ("cleaned_exact_unseen_fraction", "exact unseen, cleaned as the run"),
           ("iou_vs_cleaned_exact", "IoU vs exact cleaned as the run"))


def markdown(rows: List[Dict], header: str) -> str:
    """The table: one row per step (or offline tolerance)."""
    lines = [header, "", "| step | depth tolerance | views | masked px | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---" * (4 + len(COLUMNS)) + "|"]
    for row in rows:
        cells = [_pct(row.get(key, float("nan"))) for key, _ in COLUMNS]
        lines.append(f"| {row['step']}{' (offline)' if row.get('offline') else ''} | {row['tolerance']} | "
                     f"{row['views']} | {row['masked_pixels']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class VisibilityAccuracy:
    """Score a run's unseen masks against a generated demo scene's exact ones (optionally training the run)."""

    output_dir: Path
    """Where results.json and results.md go (and, with --train, the scene and the run)."""
    run: Optional[Path] = None
    """An existing run folder (one holding unseen_masks/, or a folder above it); None with --train."""
    scene: Optional[Path] = None
    """The run's scene folder (made by mald-nerf-demo-scene); None: the --data of the run's config.yml."""
    train: bool = False
    """Generate --demo-scene (unless --scene) and train one mald-nerf-tiny run on it first (TRAIN_ARGS)."""
    demo_scene: str = "demo-seen"
    """With --train and no --scene: the benchmark's generated scene to make (DEMO_SCENES)."""
    downscale_factor: Optional[int] = None
    """The run's image downscale factor; None: its config.yml's."""
    mask_dilation_iterations: Optional[int] = None
    """The parser's mask dilation iterations in the run; None: its config.yml's (unset there: 5, SPIn-NeRF's)."""
    mask_dilation_kernel: Optional[int] = None
    """The parser's mask dilation kernel in the run; None: its config.yml's."""
    tolerances: Tuple[float, ...] = ()
    """Also recompute the unseen masks offline from the final checkpoint at these relative depth tolerances."""

    def main(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        train_seconds = None
        run, scene = self.run, self.scene
        if self.train:
            run, scene, train_seconds = self.train_run()
        if run is None:
            raise SystemExit("pass --run RUN_FOLDER, or --train")
        config, config_path = run_config(run)
        parser = config.pipeline.datamanager.dataparser if config is not None else None
        if scene is None:
            if config is None:
                raise SystemExit(f"no config.yml under {run}: pass --scene")
            scene = Path(config.pipeline.datamanager.data or config.data or parser.data)  # ns-train's --data
        downscale = self.downscale_factor or getattr(parser, "downscale_factor", None) or 1
        iterations = self.mask_dilation_iterations
        if iterations is None:
            iterations = getattr(parser, "mask_dilation_iterations", None)
            iterations = 5 if iterations is None else iterations
        kernel = self.mask_dilation_kernel or getattr(parser, "mask_dilation_kernel", None) or 5
        visibility = config.pipeline.visibility if config is not None else None
        tolerance = getattr(visibility, "depth_tolerance", float("nan"))
        exact = exact_masks(scene, downscale, iterations, kernel)
        cleaned = (clean_like_the_run(exact, visibility.cleaning_radius, visibility.dilation)
                   if visibility is not None else None)
        steps = step_folders(run)
        if not steps:
            raise SystemExit(f"no unseen_masks/step_NNNNNN folder under {run} (visibility off, or before the warm-up)")
        rows = []
        for step, folder in steps:
            estimated = read_step_masks(folder)
            views = {name: exact.unseen[name] for name in estimated if name in exact.unseen}
            unknown = sorted(set(estimated) - set(exact.unseen))
            if unknown:
                raise SystemExit(f"{folder}: masks of views the scene has no training view for: {unknown[:5]}")
            # every masked training view must have a saved mask
            masked = [name for name, mask in exact.masks.items() if mask.any()]
            absent = sorted(set(masked) - set(estimated))
            if absent:
                raise SystemExit(f"{folder}: no unseen mask for masked training view(s) {absent[:5]}")
            rows.append({"step": step, "tolerance": tolerance, **self.scores(estimated, views, exact, cleaned)})
        if self.tolerances:
            if config_path is None:
                raise SystemExit("--tolerances needs the run's config.yml and checkpoint")
            for value, result in recompute_at_tolerances(config_path, self.tolerances, list(exact.unseen)).items():
                views = {name: exact.unseen[name] for name in result["masks"]}
                rows.append({"step": result["step"], "tolerance": value, "offline": True,
                             **self.scores(result["masks"], views, exact, cleaned)})
        for row in rows:
            if row["estimated_outside_mask"]:
                CONSOLE.print(f"[bold yellow]Step {row['step']}: {row['estimated_outside_mask']} estimated unseen "
                              "pixels lie outside the exact masks: the run read other masks (check the downscale "
                              "factor and the mask dilation).")
        header = (f"Unseen masks of {run} against the exact ones of {scene} (masks at downscale {downscale}, "
                  f"dilated by {iterations} iteration(s) of a {kernel}x{kernel} kernel), pooled over the masked "
                  "training views; precision and recall of the estimated unseen pixels." +
                  (f" Training took {train_seconds / 60:.1f} min." if train_seconds is not None else ""))
        (self.output_dir / "results.json").write_text(json.dumps(
            {"run": str(run), "scene": str(scene), "downscale_factor": downscale, "mask_dilation_iterations":
             iterations, "mask_dilation_kernel": kernel, "train_seconds": train_seconds,
             "train_command": self.train_command(scene, run) if self.train else None, "rows": rows}, indent=2) + "\n")
        (self.output_dir / "results.md").write_text(markdown(rows, header))
        table = Table(title="Unseen-mask accuracy (pooled over the masked training views)")
        for name in ("step", "tolerance", "views", "masked px", *(c[1] for c in COLUMNS)):
            table.add_column(name, justify="right")
        for row in rows:
            table.add_row(f"{row['step']}{'*' if row.get('offline') else ''}", str(row["tolerance"]),
                          str(row["views"]), str(row["masked_pixels"]),
                          *(_pct(row.get(key, float("nan"))) for key, _ in COLUMNS))
        CONSOLE.print(table)
        CONSOLE.print(f"{header}\nWrote {self.output_dir / 'results.json'} and results.md")

    @staticmethod
    def scores(estimated: Mapping[str, np.ndarray], views: Mapping[str, np.ndarray], exact: ExactMasks,
               cleaned: Optional[Dict[str, np.ndarray]]) -> Dict:
        """compare() against the exact unseen masks, plus the IoU against them cleaned as the run cleans."""
        row = compare(estimated, views, exact.masks)
        if cleaned is not None:
            clean = {name: cleaned[name] for name in views}
            row["iou_vs_cleaned_exact"] = compare(estimated, clean, exact.masks)["iou"]
            row["cleaned_exact_unseen_fraction"] = compare(clean, clean, exact.masks)["exact_unseen_fraction"]
        return row

    def train_command(self, scene: Path, run_root: Path) -> List[str]:
        """The ns-train command of --train."""
        return ["ns-train", "mald-nerf-tiny", "--data", str(scene), "--output-dir", str(run_root),
                "--experiment-name", scene.name, "--timestamp", "visibility", *TRAIN_ARGS, *PARSER_ARGS]

    def train_run(self) -> Tuple[Path, Path, Optional[float]]:
        """Generate the scene if needed and train the run (a finished run, with its config.yml and final unseen
        masks, is reused). Returns (run folder, scene folder, training seconds or None when reused)."""
        scene = self.scene
        if scene is None:
            if self.demo_scene not in DEMO_SCENES:
                raise SystemExit(f"unknown demo scene {self.demo_scene}: choose from {', '.join(DEMO_SCENES)}")
            scene = self.output_dir / "scenes" / self.demo_scene
            config = DemoSceneConfig(**DEMO_SCENES[self.demo_scene])
            if scene_config_of(scene) != config:
                CONSOLE.print(f"Generating {self.demo_scene} in {scene}")
                generate_demo_scene(scene, config, overwrite=True)
        run_root = self.output_dir / "run"
        done = run_root / "finished"
        if done.is_file():
            return run_root, scene, json.loads(done.read_text()).get("train_seconds")
        run_root.mkdir(parents=True, exist_ok=True)
        command = self.train_command(scene, run_root)
        CONSOLE.print(f"Training: {' '.join(command)}", soft_wrap=True)
        seconds = _run(command, run_root / "train.log")
        done.write_text(json.dumps({"train_seconds": round(seconds, 1)}) + "\n")
        return run_root, scene, round(seconds, 1)


def entrypoint() -> None:
    """python benchmarks/visibility_accuracy.py ..."""
    tyro.cli(VisibilityAccuracy).main()


if __name__ == "__main__":
    entrypoint()
