"""How well ``mald-nerf-masks`` finds the object: coverage of the true object pixels and extra area, per view, on
generated demo captures whose ball is known exactly. Not a test.

For every scene and reconstruction seed it writes the demo as a nerfstudio capture, runs ``mald-nerf-masks`` with
the generator's box around the ball (``DemoScene.object_box``, given in the capture's coordinates), then again
with ``--cleaning.no-refine-edges`` on the same reconstruction (the depth test's edges), and scores both against
the pixels at least half covered by the ball. Writes ``results.json`` and ``results.md`` into the output folder.

    python benchmarks/box_mask_accuracy.py --output-dir /tmp/box-accuracy --scenes demo-seed0 --seeds 0 1 2 3
    python benchmarks/box_mask_accuracy.py --output-dir /tmp/box-accuracy-scenes \\
        --scenes demo-seed1 demo-seen demo-hidden --seeds 0
    python benchmarks/box_mask_accuracy.py --output-dir /tmp/box-accuracy-brown --object-colour 0.62 0.44 0.26
    python benchmarks/box_mask_accuracy.py --output-dir /tmp/box-accuracy-shadow --scenes demo-shadow --seeds 0 1

On a scene whose ball casts a shadow (``demo-shadow``) a third pass adds ``--shadow.enabled``, and every pass is
also scored on the shadow: the share of the shadow's pixels (outside the ball, at least half shaded) the mask
covers, and the mask's area that is neither ball nor shadow, as a fraction of their area.

Scenes are the CPU benchmark's generated ones (``mald_nerfstudio.eval.benchmark.DEMO_SCENES``), at the size of
``--views`` views with the ball (and 2 object-free ones) of ``--width`` x ``--height``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_capture, object_box_flags
from mald_nerfstudio.eval.benchmark import DEMO_SCENES


def score(scene, out: Path) -> dict:
    """Coverage of the true object pixels and extra area (as a fraction of the object) of every mask in OUT; with a
    cast shadow also the coverage of the shadow's pixels and the area that is neither (as a fraction of both)."""
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    coverage, extra, shadow_coverage, outside_both = [], [], [], []
    for frame in frames:
        if "inpaint_mask_path" not in frame:
            continue
        mask = np.asarray(Image.open(out / frame["inpaint_mask_path"])) > 0
        index = int(re.findall(r"\d+", Path(frame["file_path"]).name)[0])
        truth = scene.render(scene.camera_to_worlds[index]).object_coverage >= 0.5
        coverage.append(float((mask & truth).sum() / truth.sum()))
        extra.append(float((mask & ~truth).sum() / truth.sum()))
        if scene.config.cast_shadow:
            shadow = (scene.shadow_coverage(scene.camera_to_worlds[index]) >= 0.5) & ~truth
            if shadow.any():
                shadow_coverage.append(float((mask & shadow).sum() / shadow.sum()))
            outside_both.append(float((mask & ~truth & ~shadow).sum() / (truth | shadow).sum()))
    result = {"min_coverage": min(coverage), "mean_coverage": float(np.mean(coverage)), "max_extra": max(extra),
              "mean_extra": float(np.mean(extra)), "views": len(coverage)}
    if shadow_coverage:
        result.update(min_shadow_coverage=min(shadow_coverage), mean_shadow_coverage=float(np.mean(shadow_coverage)),
                      max_extra_beyond_shadow=max(outside_both), mean_extra_beyond_shadow=float(np.mean(outside_both)))
    return result


def run(args) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--scenes", nargs="+", default=["demo-seed0"], choices=sorted(DEMO_SCENES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="reconstruction seeds")
    parser.add_argument("--steps", type=int, default=500, help="reconstruction steps")
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--object-colour", type=float, nargs=3, default=None,
                        help="the ball's albedo (RGB in [0, 1]) instead of the seed's blue, e.g. the floor's brown")
    args = parser.parse_args()
    rows = []
    for name in args.scenes:
        config = DemoSceneConfig(**{**DEMO_SCENES[name], "num_train_views": args.views, "num_test_views": 2,
                                    "width": args.width, "height": args.height,
                                    "object_colour": None if args.object_colour is None else tuple(args.object_colour)})
        scene = config.setup()
        capture = args.output_dir / name / "capture"
        if not capture.exists():
            generate_demo_capture(capture, config)
        for seed in args.seeds:
            out = args.output_dir / name / f"masks-seed{seed}"
            base = ["mald-nerf-masks", "--data", str(capture), "--output-dir", str(out),
                    *object_box_flags(scene).split(), "--reconstruction.steps", str(args.steps),
                    "--reconstruction.seed", str(seed)]
            start = time.perf_counter()
            run(base + ["--cleaning.no-refine-edges"])
            seconds = time.perf_counter() - start
            depth_only = score(scene, out)
            run(base)
            refined = score(scene, out)
            rows.append({"scene": name, "seed": seed, "steps": args.steps, "seconds_with_training": seconds,
                         "depth_only": depth_only, "refined": refined})
            if config.cast_shadow:
                run(base + ["--shadow.enabled"])
                rows[-1]["with_shadow"] = score(scene, out)
            print(json.dumps(rows[-1]), flush=True)
    (args.output_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| scene | seed | depth test: min / mean coverage | max / mean extra | refined edges (default): min / "
             "mean coverage | max / mean extra |", "|---|---|---|---|---|---|"]
    for row in rows:
        d, r = row["depth_only"], row["refined"]
        lines.append(f"| {row['scene']} | {row['seed']} | {d['min_coverage']:.1%} / {d['mean_coverage']:.1%} | "
                     f"{d['max_extra']:.1%} / {d['mean_extra']:.1%} | {r['min_coverage']:.1%} / "
                     f"{r['mean_coverage']:.1%} | {r['max_extra']:.1%} / {r['mean_extra']:.1%} |")
    shadow_rows = [row for row in rows if "with_shadow" in row]
    if shadow_rows:
        lines += ["", "| scene | seed | pass | shadow covered: min / mean | extra beyond ball and shadow (of their area): "
                  "max / mean | ball covered: min / mean |", "|---|---|---|---|---|---|"]
        for row in shadow_rows:
            for label, key in (("default", "refined"), ("--shadow.enabled", "with_shadow")):
                r = row[key]
                lines.append(f"| {row['scene']} | {row['seed']} | {label} | {r['min_shadow_coverage']:.1%} / "
                             f"{r['mean_shadow_coverage']:.1%} | {r['max_extra_beyond_shadow']:.1%} / "
                             f"{r['mean_extra_beyond_shadow']:.1%} | {r['min_coverage']:.1%} / "
                             f"{r['mean_coverage']:.1%} |")
    (args.output_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
