"""The app's command line: localhost unless asked, a Space's server name honoured, presets by name."""
import pytest

import app


def test_listens_on_localhost_by_default(monkeypatch):
    monkeypatch.delenv("GVS_HOST", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert app.parse_args([]).host == "127.0.0.1"


def test_space_server_name_and_explicit_host(monkeypatch):
    monkeypatch.delenv("GVS_HOST", raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert app.parse_args([]).host == "0.0.0.0"
    assert app.parse_args(["--host", "127.0.0.2"]).host == "127.0.0.2"


def test_preset_and_port(monkeypatch):
    monkeypatch.delenv("GVS_PRESET", raising=False)
    a = app.parse_args(["--preset", "micro", "--port", "7999", "--share"])
    assert (a.preset, a.port, a.share) == ("micro", 7999, True)
    assert app.parse_args([]).preset == "auto"


def test_example_cache_modes(monkeypatch):
    monkeypatch.delenv("GVS_CACHE_EXAMPLES", raising=False)
    monkeypatch.delenv("GVS_CACHE_EXAMPLES_MODE", raising=False)
    assert app.parse_args([]).cache_examples == "eager"
    assert app.parse_args(["--cache-examples", "lazy"]).cache_examples == "lazy"
    assert app.parse_args(["--no-cache-examples"]).cache_examples == "off"
    with pytest.raises(SystemExit):
        app.parse_args(["--cache-examples", "sometimes"])


def test_old_runs_and_gradio_cache_are_bounded(monkeypatch, preset, tmp_path):
    monkeypatch.delenv("GVS_KEEP_RUNS", raising=False)
    monkeypatch.delenv("GVS_MAX_AGE_S", raising=False)
    a = app.parse_args(["--keep-runs", "7", "--max-age", "600"])
    assert (a.keep_runs, a.max_age) == (7, 600)
    assert app.parse_args([]).keep_runs == 64 and app.parse_args([]).max_age == 86400
    assert app.delete_cache_for(600) == (600, 600) and app.delete_cache_for(86400) == (3600, 86400)
    demo = app.build_demo(preset, cache_examples="off", delete_cache=app.delete_cache_for(600))
    assert demo.delete_cache == (600, 600)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.delenv("GVS_RUNS_DIR", raising=False)
    assert app.runs_root() == tmp_path / "gvs-runs"  # inside Gradio's cache: served in place, never copied


def test_model_fields_off_unless_a_model_folder_is_given(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GVS_MODEL_DIR", raising=False)
    assert app.parse_args([]).model_dir is None
    assert app.parse_args(["--model-dir", str(tmp_path)]).model_dir == str(tmp_path)
    monkeypatch.setenv("GVS_MODEL_DIR", str(tmp_path))
    assert app.parse_args([]).model_dir == str(tmp_path)
    assert app.main(["--model-dir", str(tmp_path / "missing")]) == 2  # before anything loads
    assert "error: --model-dir:" in capsys.readouterr().err
