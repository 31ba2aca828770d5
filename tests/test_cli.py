"""The commands a user runs: ns-train, ns-eval and ns-viewer on mald-nerf runs, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.scenes import build_fern_spinnerf_scene

pytestmark = pytest.mark.slow


def answer_ctrl_c() -> None:
    """For ``preexec_fn``: Ctrl-C's default action in the child. A test run started in the background by a
    non-interactive shell (``nohup pytest ... &``) starts every child with SIGINT ignored, and Python then never
    raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(args, cwd: Path, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run a command, returning its result with stdout and stderr merged into ``stdout``."""
    merged = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=merged, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def only_config(output_dir: Path) -> Path:
    configs = sorted(output_dir.rglob("config.yml"))
    assert len(configs) == 1, configs
    return configs[0]


@pytest.fixture(scope="module")
def demo_run(demo_scene, tmp_path_factory) -> Path:
    """A short mald-nerf-tiny run on the demo scene with the CLI defaults (exemplar inpainter, adversarial on) and
    visibility-aware inpainting switched on after a warm-up of 6 steps."""
    out = tmp_path_factory.mktemp("demo-run")
    result = run(
        ["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", str(out),
         "--max-num-iterations", "24", "--vis", "tensorboard", "--logging.steps-per-log", "2",
         "--pipeline.visibility.enabled", "True", "--pipeline.dataset-update.warmup-steps", "6",
         "--pipeline.dataset-update.first-update-step", "10", "--pipeline.dataset-update.update-every", "10"],
        cwd=out,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    return only_config(out)


def test_ns_train_on_demo_scene_leaves_config_checkpoint_and_adversarial_logs(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = demo_run.parent
    assert list((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    assert list((run_dir / "unseen_masks" / "step_000005").glob("*.png"))  # visibility at the warm-up's end
    events = EventAccumulator(str(run_dir)).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("Train Loss Dict/adversarial_loss", "Train Metrics Dict/adv_g_feature_matching",
                "Train Loss Dict/rgb_loss", "Train Metrics Dict/adv_d_loss",
                "Train Metrics Dict/adv_d_real_logit", "Train Metrics Dict/adv_d_fake_logit",
                "Dataset update/strength", "Visibility/unseen fraction of the masks"):
        assert tag in tags, (tag, sorted(tags))


def test_ns_eval_reports_psnr_ssim_over_object_free_views_and_names_skipped_metrics(demo_run, tmp_path):
    out = tmp_path / "eval.json"
    result = run(["ns-eval", "--load-config", str(demo_run), "--output-path", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results["num_views"] == 3  # the demo fixture's object-free views
    assert 5.0 < results["psnr"] < 60.0 and 0.0 < results["ssim"] <= 1.0
    assert [entry["image"] for entry in results["per_image"]] == ["image000.png", "image001.png", "image002.png"]
    assert "masked_psnr" in results["per_image"][0] and "m_sharpness" in results["per_image"][0]
    assert results["m_swd"] > 0 and results["swd"] > 0 and 0 < results["m_sharpness"] < 10  # weight-free proxies
    if "lpips" not in results:  # no AlexNet weights on this machine: skipped with the reason
        assert "alexnet-owt-7be5be79.pth" in results["unavailable_metrics"]["lpips"]
        assert "Skipped metric lpips" in result.stdout


def test_ns_viewer_serves_the_viewer_page(demo_run, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["ns-viewer", "--load-config", str(demo_run), "--viewer.websocket-port", str(port),
         "--viewer.websocket-host", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline, status, body = time.time() + 180, None, ""
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    status, body = response.status, response.read(4096).decode(errors="replace")
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
        assert status == 200 and "<html" in body.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ns_train_on_a_real_capture_in_spinnerf_layout(tmp_path):
    scene = build_fern_spinnerf_scene(tmp_path / "fern")
    result = run(
        ["ns-train", "mald-nerf-tiny", "--data", str(scene), "--output-dir", str(tmp_path / "out"),
         "--machine.device-type", "cpu", "--max-num-iterations", "30", "--viewer.quit-on-train-completion", "True",
         # ns-eval below renders crops of every view: 2 crops of 48 px keep the test short on a CPU.
         "--pipeline.model.metrics.crops-per-image", "2", "--pipeline.model.metrics.crop-size", "48",
         "spinnerf-data", "--downscale-factor", "2", "--num-test-views", "0"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    config = only_config(tmp_path / "out")
    assert (config.parent / "nerfstudio_models" / "step-000000029.ckpt").is_file()
    assert "Training views: 20 (20 with a mask)" in result.stdout

    # No object-free views (as LLFF): ns-eval scores without ground truth instead of refusing the scene.
    out = tmp_path / "eval.json"
    evaluated = run(["ns-eval", "--load-config", str(config), "--output-path", str(out)], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results["num_views"] == 20 and results["c_swd"] > 0 and min(results["num_crops"]) > 0
    assert "c_fid" in results or "c_fid" in results["unavailable_metrics"]


def test_offline_default_ldm_stops_at_once_with_a_clear_message(demo_scene, tmp_path):
    start = time.time()
    result = run(
        ["ns-train", "mald-nerf", "--data", str(demo_scene), "--output-dir", str(tmp_path),
         "--machine.device-type", "cpu", "--vis", "tensorboard"],
        cwd=tmp_path, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")},
    )
    elapsed = time.time() - start
    assert result.returncode != 0
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    text = " ".join(result.stdout.split())
    assert "stabilityai/stable-diffusion-2-inpainting" in text
    assert "--pipeline.inpainter.model" in text and "pipeline.inpainter:exemplar" in text
    assert not list(tmp_path.rglob("*.ckpt")) and elapsed < 120


def test_ns_train_with_tiny_ldm_by_path_and_customisation_completes(demo_scene, tiny_ldm_dir, tmp_path):
    result = run(
        ["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", str(tmp_path / "out"),
         "--max-num-iterations", "8", "--vis", "tensorboard",
         "--pipeline.visibility.enabled", "True", "--pipeline.dataset-update.warmup-steps", "2",
         "--pipeline.dataset-update.first-update-step", "3", "--pipeline.dataset-update.update-every", "3",
         # tyro: a subcommand and its options come after the method's own options
         "pipeline.inpainter:ldm", "--pipeline.inpainter.model", str(tiny_ldm_dir),
         "--pipeline.inpainter.num-inference-steps", "4", "--pipeline.inpainter.customization.steps", "4",
         "--pipeline.inpainter.customization.cache-dir", str(tmp_path / "lora")],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "LDM customised to the scene with LoRA adapter" in result.stdout
    assert list((tmp_path / "lora").rglob("*.safetensors"))
    assert list((tmp_path / "out").rglob("step-000000007.ckpt"))


def test_ns_train_help_lists_both_methods(tmp_path):
    result = run(["ns-train", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert "mald-nerf-tiny" in result.stdout and "mald-nerf " in result.stdout.replace("\n", " ")
    method_help = run(["ns-train", "mald-nerf", "--help"], cwd=tmp_path)
    assert method_help.returncode == 0
    for flag in ("--pipeline.dataset-update.t-max", "--pipeline.model.use-adversarial", "pipeline.inpainter:ldm",
                 "pipeline.inpainter:exemplar", "--pipeline.datamanager.inpaint-patch-size"):
        assert flag in method_help.stdout, flag
    ldm_help = run(["ns-train", "mald-nerf", "pipeline.inpainter:ldm", "--help"], cwd=tmp_path)
    assert ldm_help.returncode == 0 and "--pipeline.inpainter.model" in ldm_help.stdout, ldm_help.stdout[-2000:]
    assert "--pipeline.inpainter.customization.rank" in ldm_help.stdout  # LoRA's settings are the LDM's


def test_ns_eval_on_a_damaged_checkpoint_names_the_file_in_one_paragraph(demo_run, tmp_path):
    (checkpoint,) = list((demo_run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    whole = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(whole[: len(whole) // 3])  # what a kill during a non-atomic save leaves
        result = run(["ns-eval", "--load-config", str(demo_run), "--output-path", str(tmp_path / "eval.json")],
                     cwd=tmp_path)
    finally:
        checkpoint.write_bytes(whole)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    assert str(checkpoint) in result.stdout and "cannot be loaded" in result.stdout


def test_ns_render_writes_a_video_of_a_trained_run(demo_run, tmp_path):
    video = tmp_path / "interpolated.mp4"
    result = run(["ns-render", "interpolate", "--load-config", str(demo_run), "--output-path", str(video),
                  "--interpolation-steps", "2", "--frame-rate", "4"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert video.is_file() and video.stat().st_size > 1000


def _listening_hosts(port: int):
    """Local addresses (hex, as the kernel lists them) of the sockets listening on ``port``; no traffic is sent."""
    hosts = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                hosts.append(address)
    return hosts


def wait_until_listening(proc: subprocess.Popen, port: int, timeout: float = 180) -> list:
    """The addresses ``proc`` listens on at ``port`` once it does (empty if it exits or ``timeout`` passes first)."""
    deadline, hosts = time.time() + timeout, []
    while time.time() < deadline and proc.poll() is None and not hosts:
        hosts = _listening_hosts(port)
        time.sleep(0.5)
    return hosts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's socket table (Linux)")
def test_ns_train_viewer_listens_on_this_machine_only(demo_scene, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", str(tmp_path),
         "--vis", "viewer", "--viewer.websocket-port", str(port), "--max-num-iterations", "100000"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        hosts = wait_until_listening(proc, port)
        assert hosts, "the viewer never listened"
        assert set(hosts) == {"0100007F"}, hosts  # 127.0.0.1, not 00000000 (0.0.0.0, every interface)
    finally:
        proc.kill()
        proc.wait(timeout=30)
