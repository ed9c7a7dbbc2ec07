"""`bench/wan_memory_model.py`: the model's arithmetic (tokens, weights from the real configs, the ordering of the
rows it exists to show) without the VAE count (a minute on CPU; docs/wan.md records the full table)."""
from __future__ import annotations

import importlib.util

from .conftest import ROOT


def load():
    spec = importlib.util.spec_from_file_location("wan_memory_model", ROOT / "bench" / "wan_memory_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_memory_model_rows(capsys):
    m = load()
    assert m.tokens(33) == 9 * 30 * 52 and m.tokens(81) == 21 * 30 * 52
    w = m.weights()
    assert 1.2e9 < w["transformer"] / 2 < 1.6e9  # Wan 2.1 "1.3B"
    assert 5.0e9 < w["text_encoder"] / 2 < 6.0e9  # umT5-XXL encoder
    rows = {(r["frames"], r["method"], r["attention"]): r for r in m.table(calibrate=False)}
    for f in (33, 81):
        none, titan = rows[f, "none", "flash"]["transformer_act"], rows[f, "titan", "flash"]["transformer_act"]
        assert titan == 2 * none  # primal + tangent
        assert rows[f, "titan", "chunked"]["transformer_act"] == titan + 2**30  # the chunked jvp's 1 GiB
        assert rows[f, "none", "math"]["transformer_act"] > 10 * none  # the N² term
        assert rows[f, "freedom", "flash"]["transformer_act"] > 10 * titan  # every block kept for the backward
        assert rows[f, "titan-direct", "flash"]["transformer_act"] == titan  # its extra is the decode's backward
    assert m.main(["--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MODEL, not a measurement") and out.count("\n| 33 |") == 6 and out.count("\n| 81 |") == 6
