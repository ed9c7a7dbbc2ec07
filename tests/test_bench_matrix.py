"""The bench matrix writes its rows (reference rows included), its markdown table and its plots on tiny components."""
import json

import pytest

from pipelines import cli
from pipelines.bench import markdown_table, matrix_sizes, run_matrix, write_report


def test_matrix_sizes_cover_frames_times_sides():
    assert matrix_sizes((8, 16), (256, 512)) == ["8x256", "16x256", "8x512", "16x512"]


def test_matrix_rows_table_and_plots_on_tiny_components(tmp_path):
    rows = list(run_matrix("tiny", ["none", "titan"], ["2x16", "4x16"], ["float32"], steps=2, device="cpu"))
    got = [(r["method"], r["size"]) for r in rows]
    assert got == [(m, s) for m in ("diffusers", "none+previews", "none", "titan") for s in ("2x16", "4x16")]
    for r in rows:
        assert r["ok"] and r["finite"] and r["seconds"] > 0 and r["peak_memory_bytes"] > 0
        assert r["seconds_per_step"] == pytest.approx(r["seconds"] / 2, abs=5e-5)  # rounded to 4 decimals
        assert r["device"] == "cpu" and "CPU" in r["device_name"]
        assert r.get("jvp_attention") == ("chunked" if r["method"] == "titan" else None)
    paths = write_report(rows, tmp_path / "out", command="python -m pipelines bench --matrix ...")
    lines = paths["jsonl"].read_text().splitlines()
    assert [json.loads(x) for x in lines] == rows
    md = paths["markdown"].read_text()
    assert "python -m pipelines bench --matrix" in md and "Device: CPU" in md
    table = [x for x in md.splitlines() if x.startswith("| tiny")]
    assert len(table) == len(rows)
    # the unguided row is the 1.00 baseline of its size
    none_rows = [x for x in table if "| none |" in x]
    assert all("| 1.00 | 1.00 |" in x for x in none_rows)
    if paths["plots"]:
        assert all(p.exists() and p.stat().st_size > 1000 for p in paths["plots"])


def test_failed_rows_are_listed_not_dropped():
    rows = [{"preset": "sd15-random", "dtype": "float16", "size": "32x512", "method": "freedom", "ok": False,
             "error": "out of memory: CUDA"}]
    assert "out of memory" in markdown_table(rows)


def test_cli_matrix_prints_one_json_object_per_row_and_writes_the_report(tmp_path, capsys):
    rc = cli.main(["bench", "--preset", "tiny", "--matrix", "--methods", "none", "--frames", "2", "--sides", "16",
                   "--steps", "1", "--device", "cpu", "--no-references", "--out", str(tmp_path)])
    assert rc == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["method"], r["size"]) for r in out] == [("none", "2x16")]
    assert (tmp_path / "bench.md").exists() and (tmp_path / "bench.jsonl").exists()
    assert cli.main(["bench", "--preset", "tiny", "--matrix", "--frames", "two"]) == 2
