"""ImageBind's first use downloads the checkpoint (resumable, progress, checksum) from a local server; where it
cannot, the audio task falls back to AV-sync with a notice. No external network: 127.0.0.1 only."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from rewards.base import RewardError

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /imagebind_huge.pth with HTTP Range support; `cut` truncates the next response."""

    def __init__(self):
        self.requests, self.cut = [], None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = PAYLOAD[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None:  # a dropped connection part-way
                    body, outer.cut = body[: outer.cut], None
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/imagebind_huge.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_download_resumes_and_checks_the_checksum(server, tmp_path):
    from rewards.imagebind import download_checkpoint

    target = tmp_path / "hub" / "imagebind_huge.pth"
    server.cut = 100_000
    with pytest.raises(RewardError, match="resume"):
        download_checkpoint(server.url, target, sha256=SHA, progress=False)
    part = target.with_name(target.name + ".part")
    kept = part.stat().st_size
    assert 0 < kept <= 100_000 and not target.exists()
    out = download_checkpoint(server.url, target, sha256=SHA, progress=False)
    assert server.requests == [None, f"bytes={kept}-"]  # the second request resumed where the first stopped
    assert out == target and target.read_bytes() == PAYLOAD and not part.exists()
    assert target.with_name("imagebind_huge.pth.sha256").read_text().split()[0] == SHA


def test_download_refuses_a_wrong_checksum(server, tmp_path):
    from rewards.imagebind import download_checkpoint

    target = tmp_path / "imagebind_huge.pth"
    with pytest.raises(RewardError, match="checksum mismatch"):
        download_checkpoint(server.url, target, sha256="0" * 64, progress=False)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_resolve_downloads_once_into_the_hf_cache(server, tmp_path, monkeypatch):
    from rewards import imagebind as ib

    monkeypatch.delenv("IMAGEBIND_CKPT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GVS_IMAGEBIND_URL", server.url)
    monkeypatch.setenv("IMAGEBIND_SHA256", SHA)
    monkeypatch.setattr(ib, "default_cache_dir", lambda: tmp_path / "hf" / "hub" / "gvs-imagebind")
    with pytest.raises(RewardError, match="download=True"):
        ib.resolve_checkpoint(download=False)
    p = ib.resolve_checkpoint(download=True, progress=False)
    assert p == tmp_path / "hf" / "hub" / "gvs-imagebind" / "imagebind_huge.pth" and p.read_bytes() == PAYLOAD
    assert ib.resolve_checkpoint(download=True) == p and len(server.requests) == 1  # cached: no second download
    # IMAGEBIND_CKPT wins over the download
    own = tmp_path / "own.pth"
    own.write_bytes(b"x")
    monkeypatch.setenv("IMAGEBIND_CKPT", str(own))
    assert ib.resolve_checkpoint(download=True) == own and len(server.requests) == 1
    # offline: no download
    monkeypatch.delenv("IMAGEBIND_CKPT")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ib, "default_cache_dir", lambda: tmp_path / "empty")
    with pytest.raises(RewardError, match="offline"):
        ib.resolve_checkpoint(download=True)


def test_default_cache_dir_is_the_hf_hub_cache():
    from huggingface_hub import constants

    from rewards.imagebind import default_cache_dir

    assert default_cache_dir().parent == __import__("pathlib").Path(constants.HF_HUB_CACHE)


def test_audio_task_falls_back_to_avsync_with_a_notice(monkeypatch, tmp_path):
    """The preset asks for ImageBind; the checkpoint cannot be had (offline, none cached): AV-sync and a notice."""
    from rewards import imagebind as ib

    from pipelines.presets import _tiny
    from pipelines.tasks import TaskInputs, build_task

    monkeypatch.delenv("IMAGEBIND_CKPT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ib, "default_cache_dir", lambda: tmp_path / "none")
    preset = _tiny(__import__("torch").device("cpu"), "test")
    preset.audio_reward = "imagebind"
    t = np.arange(16000 * 2) / 16000
    wave = (np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0.9)).astype(np.float32)
    setup = build_task(preset, "audio", TaskInputs(prompt="a ball", audio=(wave, 16000)), num_frames=8, height=16,
                       width=16)
    assert type(setup.reward).__name__ == "AVSyncReward"
    assert any("ImageBind is unavailable" in n and "AV-sync" in n and "offline" in n for n in setup.notices), setup.notices
