#!/usr/bin/env bash
# The tuning sweep of docs/decisions.md ("Tuning sweep"): mald-nerf-tiny variants on one generated scene, each a
# real ns-train + ns-eval run at 600 iterations (the CPU benchmark's budget for mald-nerf-tiny's two NeRF steps per
# iteration; nerfacto-masked here gets 600 iterations, not the benchmark's 1200), factor 2, the cpu preset's update
# schedule and mask dilation, two runs at a time with one thread each. Prints one line of metrics per variant.
#
#   mald-nerf-benchmark --preset cpu --output-dir bench   # generates bench/scenes/demo-seed0 (or reuse one)
#   bash benchmarks/tuning_sweep.sh bench/scenes/demo-seed0 sweep-out [VARIANT ...]
#
# Without VARIANT names every variant below runs (about 4 minutes each on 2 cores, two at a time).
set -u
scene=$1; out=$2; shift 2
schedule="--pipeline.dataset-update.first-update-step 200 --pipeline.dataset-update.update-every 50"
schedule="$schedule --pipeline.dataset-update.views-per-update 4"
declare -A VARIANTS=(
  [nerfacto-masked]="nerfacto-masked-tiny"
  [nerfacto-masked-pose-refinement]="nerfacto-masked-tiny --pipeline.model.camera-optimizer.mode SO3xR3"
  [summed-step-proposal-on-patches]="mald-nerf-tiny --pipeline.separate-inpainting-step False --pipeline.model.proposal-losses-on-patches True"
  [summed-step]="mald-nerf-tiny --pipeline.separate-inpainting-step False"
  [summed-step-warm-up]="mald-nerf-tiny --pipeline.separate-inpainting-step False --pipeline.dataset-update.warmup-steps 200 --pipeline.dataset-update.initial-strength 0.6 --pipeline.dataset-update.first-update-step 250"
  [summed-step-context-margin-tight]="mald-nerf-tiny --pipeline.separate-inpainting-step False pipeline.inpainter:exemplar --pipeline.inpainter.context-margin 0.25 0.75"
  [default]="mald-nerf-tiny"
  [pose-refinement]="mald-nerf-tiny --pipeline.model.camera-optimizer.mode SO3xR3"
  [adv-weights-half]="mald-nerf-tiny --pipeline.model.adversarial-loss.lambda-adv 0.001 --pipeline.model.adversarial-loss.lambda-fm 0.01"
  [adv-weights-double]="mald-nerf-tiny --pipeline.model.adversarial-loss.lambda-adv 0.004 --pipeline.model.adversarial-loss.lambda-fm 0.04"
  [discriminator-lr-5e-4]="mald-nerf-tiny --optimizers.discriminator.optimizer.lr 5e-4"
  [context-margin-tight]="mald-nerf-tiny pipeline.inpainter:exemplar --pipeline.inpainter.context-margin 0.25 0.75"
  [visibility]="mald-nerf-tiny --pipeline.visibility.enabled True --pipeline.dataset-update.warmup-steps 150"
  [visibility-recompute]="mald-nerf-tiny --pipeline.visibility.enabled True --pipeline.dataset-update.warmup-steps 150 --pipeline.visibility.recompute-every 50"
  [patch-appearance-trained]="mald-nerf-tiny --pipeline.model.patch-appearance trained"
  [patch-appearance-mean]="mald-nerf-tiny --pipeline.model.patch-appearance mean"
  [warm-up]="mald-nerf-tiny --pipeline.dataset-update.warmup-steps 200 --pipeline.dataset-update.initial-strength 0.6 --pipeline.dataset-update.first-update-step 250"
)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=("${!VARIANTS[@]}")

run() {
  local name=$1 dir=$out/$1
  read -r method args <<< "${VARIANTS[$name]}"
  local extra=""; [[ $method == mald-nerf-tiny ]] && extra=$schedule
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 ns-train "$method" --data "$scene" --output-dir "$dir" --timestamp run --max-num-iterations 600 \
    --vis tensorboard --machine.device-type cpu $extra ${args:-} mald-data --downscale-factor 2 --mask-dilation-iterations 1 > "$dir/train.log" 2>&1 \
    || { echo "$name: training failed, see $dir/train.log"; return; }
  OMP_NUM_THREADS=1 ns-eval --load-config "$(ls "$dir"/*/"$method"/run/config.yml)" --output-path "$dir/eval.json" \
    > "$dir/eval.log" 2>&1 || { echo "$name: ns-eval failed, see $dir/eval.log"; return; }
  python - "$name" "$dir/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))["results"]
print(sys.argv[1], " ".join(f"{k}={r[k]:.3f}" for k in ("m_rgb_swd", "m_swd", "m_sharpness", "unmasked_psnr", "masked_psnr", "psnr")))
PY
}

for ((i = 0; i < ${#names[@]}; i += 2)); do
  run "${names[i]}" &
  [ $((i + 1)) -lt ${#names[@]} ] && run "${names[i + 1]}" &
  wait
done
