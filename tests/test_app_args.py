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
