#!/usr/bin/env bash
# Installs mald-nerfstudio and its dependencies into the current Python (3.10+), e.g. a fresh machine or venv.
# 1. torch/torchvision first, so pip does not pick a different build for nerfstudio;
# 2. the package (editable) with its test extras, at the versions in constraints.txt (those the tests last passed
#    with; MALD_UNPINNED=1 installs from pyproject.toml's ranges instead);
# 3. OpenCV with the contrib modules again: nerfstudio and nuscenes-devkit pull plain opencv wheels that install
#    into the same cv2/ folder and can hide cv2.xphoto, which the exemplar inpainter uses;
# 4. an ffmpeg binary for ns-render when none is on PATH: the one the imageio-ffmpeg wheel ships, linked as
#    `ffmpeg` next to this Python's ns-* commands.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIN=(-c constraints.txt)
if [ "${MALD_UNPINNED:-0}" = "1" ]; then PIN=(); fi
"$PY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --quiet "${PIN[@]}" -e ".[test]"
"$PY" -m pip install --quiet --force-reinstall --no-deps "opencv-contrib-python-headless==4.10.0.84"
if ! command -v ffmpeg >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "imageio-ffmpeg>=0.5"
    "$PY" -c "
import os, sysconfig, imageio_ffmpeg
link = os.path.join(sysconfig.get_path('scripts'), 'ffmpeg')
if os.path.lexists(link):
    os.remove(link)
os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), link)
print('ffmpeg for ns-render:', link)
"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
"$PY" -c "import cv2, mald_nerfstudio; assert hasattr(cv2, 'xphoto'), 'cv2.xphoto missing'; print('mald-nerfstudio installed')"
