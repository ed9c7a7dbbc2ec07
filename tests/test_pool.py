"""The device pool hands out distinct devices, blocks when all are busy, and releases them on exit, on error and
when a generator holding one is closed (a cancelled Gradio event); ranks map to devices."""
import threading
import time

import pytest

from pipelines.pool import (
    DevicePool, PipelinePool, PoolTimeout, available_devices, current_rank, device_for_rank, shard,
)


def test_distinct_devices_and_blocking():
    pool = DevicePool(["cuda:0", "cuda:1"])
    a, b = pool.acquire(), pool.acquire()
    assert {a, b} == {"cuda:0", "cuda:1"}
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.05)
    got = []
    t = threading.Thread(target=lambda: got.append(pool.acquire(timeout=5)))
    t.start()
    time.sleep(0.05)
    assert got == []  # still waiting
    pool.release(b)
    t.join(5)
    assert got == [b]
    pool.release(a)
    with pytest.raises(ValueError, match="released twice"):
        pool.release(a)
    with pytest.raises(ValueError, match="not in this pool"):
        pool.release("cuda:7")


def test_released_on_error():
    pool = DevicePool(["cuda:0"])
    with pytest.raises(RuntimeError):
        with pool.slot():
            raise RuntimeError("generation failed")
    assert pool.free == ["cuda:0"]


def test_released_when_a_streaming_generator_is_cancelled():
    pool = DevicePool(["cuda:0", "cuda:1"])

    def handler():
        with pool.slot() as device:
            for step in range(100):
                yield device, step

    g1, g2 = handler(), handler()
    d1, _ = next(g1)
    d2, _ = next(g2)
    assert d1 != d2 and pool.free == []
    g1.close()  # what Gradio's cancel does at the next yield
    assert pool.free == [d1]
    g2.close()
    assert pool.free == ["cuda:0", "cuda:1"]


def test_concurrent_holders_never_share_a_device():
    pool = DevicePool(["cuda:0", "cuda:1", "cuda:2"])
    holding, clashes = set(), []
    lock = threading.Lock()

    def work():
        for _ in range(20):
            with pool.slot(timeout=5) as d:
                with lock:
                    if d in holding:
                        clashes.append(d)
                    holding.add(d)
                time.sleep(0.001)
                with lock:
                    holding.discard(d)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert clashes == [] and sorted(pool.free) == ["cuda:0", "cuda:1", "cuda:2"]


def test_pipeline_pool_builds_one_object_per_device_lazily():
    built = []
    pool = PipelinePool(lambda d: built.append(d) or f"preset@{d}", ["cuda:0", "cuda:1"])
    assert len(pool) == 2 and built == []
    with pool.get() as (d1, p1):
        with pool.get() as (d2, p2):
            assert d1 != d2 and p1 == f"preset@{d1}" and p2 == f"preset@{d2}"
    with pool.get() as (d3, p3):
        assert p3 == f"preset@{d3}"
    assert sorted(built) == ["cuda:0", "cuda:1"]  # each built once


def test_cpu_machine_has_one_slot(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_devices() == ["cpu"]
    assert len(DevicePool()) == 1
    with pytest.raises(ValueError, match="no CUDA"):
        available_devices("cuda")


def test_ranks_map_to_devices_and_shards(monkeypatch):
    devs = ["cuda:0", "cuda:1"]
    assert [device_for_rank(r, devs) for r in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert device_for_rank(3, ["cpu"]) == "cpu"
    cells = list(range(7))
    assert shard(cells, 0, 2) + shard(cells, 1, 2) == [0, 2, 4, 6, 1, 3, 5]
    with pytest.raises(ValueError):
        shard(cells, 2, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert current_rank() == (1, 2)
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ValueError, match="whole numbers"):
        current_rank()


def test_app_studio_takes_a_pool_slot_per_generation_and_gives_it_back_on_error_and_cancel():
    import app
    from pipelines.presets import load_preset

    preset = load_preset("tiny", device="cpu")
    # two slots (one slot never waits on the pool: Gradio's concurrency limit already serialises the runs)
    pool = PipelinePool(lambda d: preset, ["cpu", "cpu:1"])
    studio = app.Studio(preset, pool)
    assert studio.slots == 2
    with pytest.raises(Exception, match="method"):  # bad input: gr.Error naming the field
        next(studio.generate("t2v", {"method": None}))
    assert sorted(pool.devices.free) == ["cpu", "cpu:1"]
    kw = {"prompt": "a red circle", "method": "none", "mg_scale": 0, "seed": 0, "steps": 3, "cfg": 7.5,
          "frames": preset.default_frames, "size": preset.default_size}
    gen = studio.generate("t2v", kw)
    next(gen)  # the first step streamed: a slot is held
    assert len(pool.devices.free) == 1
    gen.close()  # cancel
    assert sorted(pool.devices.free) == ["cpu", "cpu:1"]
