"""Synthetic audio for the audio reward and metric tests."""
import numpy as np

SR = 16000


def click_track(times, seconds, seed=0, sr=SR):
    """Mono float32 of `seconds` with a decaying noise click (800 samples) at each of `times` (s)."""
    rng = np.random.RandomState(seed)
    wav = np.zeros(int(seconds * sr), np.float32)
    for t in times:
        s = int(t * sr)
        wav[s: s + 800] += (rng.randn(800) * np.exp(-np.arange(800) / 200)).astype(np.float32)
    return wav
