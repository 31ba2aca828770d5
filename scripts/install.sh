#!/usr/bin/env bash
# Installs mald-nerfstudio and its dependencies into the current Python (3.10+), e.g. a fresh machine or venv.
# 1. torch/torchvision first, so pip does not pick a different build for nerfstudio;
# 2. the package (editable) with its test extras;
# 3. OpenCV with the contrib modules again: nerfstudio and nuscenes-devkit pull plain opencv wheels that install
#    into the same cv2/ folder and can hide cv2.xphoto, which the exemplar inpainter uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --quiet -e ".[test]"
"$PY" -m pip install --quiet --force-reinstall --no-deps "opencv-contrib-python-headless==4.10.0.84"
"$PY" -c "import cv2, mald_nerfstudio; assert hasattr(cv2, 'xphoto'), 'cv2.xphoto missing'; print('mald-nerfstudio installed')"
