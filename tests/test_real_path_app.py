"""The real path through the app: `python app.py --preset sd15-random` (GVS_SD15_RANDOM_SIZE=small: the animatediff
set-up, random weights, no download) on 127.0.0.1, every endpoint with its tab's default method through
gradio_client: previews stream, the report names the preset and its real reward, and the video has the frames."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines import media

pytestmark = pytest.mark.slow
STEPS = 2
PROMPT = "a red ball bouncing on a gray floor"


@pytest.fixture(scope="module")
def sd15_client(tmp_path_factory):
    from gradio_client import Client

    from tests.conftest import free_port, start_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GVS_SD15_RANDOM_SIZE", "small")
        mp.delenv("IMAGEBIND_CKPT", raising=False)
        log = tmp_path_factory.mktemp("sd15app") / "app.log"
        proc, url = start_app(free_port(), log, extra=("--preset", "sd15-random", "--cache-examples", "off"))
    try:
        yield Client(url, verbose=False), log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("api,task,reward,extra", [
    ("/text_to_video", "t2v", "text", {}),
    ("/style_transfer", "style", "style", {"style_image": "style_stripes.png"}),
    ("/audio_alignment", "audio", "imagebind", {"audio": "impacts_long.wav"}),
    ("/frame_interpolation", "interpolate", "interpolation",
     {"first_frame": "first_frame.png", "last_frame": "last_frame.png"}),
])
def test_every_endpoint_on_the_real_set_up(sd15_client, examples_dir, api, task, reward, extra):
    from gradio_client import handle_file

    from pipelines.presets import task_default_method

    client, log = sd15_client
    files = {k: handle_file(str(examples_dir / v)) for k, v in extra.items()}
    method = task_default_method(task)[0]
    job = client.submit(request={"prompt": PROMPT, "steps": STEPS, "frames": 8, "method": method}, api_name=api,
                        **files)
    preview, plot, video, report_path, summary = job.result(timeout=300)
    outs = job.outputs()
    assert len(outs) >= 2 and all(o[0] is not None for o in outs[1:])  # the first step streamed, then the final row
    report = json.loads(Path(report_path).read_text())
    assert report["preset"] == "sd15-random" and report["task"] == task and report["method"] == method
    assert report["reward_name"] == reward, report.get("notices")
    assert report["fps"] == 8 and report["frames"] == 8 and report["final_reward"] is not None
    assert len(report["reward_per_step"]) == STEPS
    path = video["video"] if isinstance(video, dict) else video
    assert media.count_frames(path) == 8
