"""The `paper` switch (`pipelines.guidance.paper`): each method as its paper states it, from the CLI, the request, the
app's named fields and a method spec; user parameters win; the trust region never caps; docs/methods.md's table of
paper settings is the dict's."""
from __future__ import annotations

import json
import re

import pytest

from pipelines.guidance import method_params
from pipelines.guidance.paper import DEVIATION_REASONS, PAPER_SETTINGS, PAPER_SOURCES, paper_settings
from pipelines.request import GenerationRequest, RequestError, resolve_params, run, validate
from pipelines.request.fields import check_fields, to_request
from pipelines.request.reports import build_report

from .conftest import ROOT
from .test_cli import _cli

PROMPT = "a green circle"


def test_every_paper_setting_is_a_parameter_of_its_method_with_an_unbounded_step():
    for method, settings in PAPER_SETTINGS.items():
        specs = {s.name: s for s in method_params(method)}
        assert settings and set(settings) <= set(specs), (method, set(settings) - set(specs))
        assert resolve_params(method, settings) == {**{n: s.default for n, s in specs.items()}, **settings}
        if "trust" in specs:  # every method with a trust region runs unbounded under its paper's settings
            assert settings["trust"] == 0, method
    assert set(PAPER_SETTINGS) == {"titan", "freedom", "mpgd", "tfg", "doodl", "free2guide"}
    assert PAPER_SETTINGS["titan"]["update"] == "sign" and PAPER_SETTINGS["titan"]["step_size"] == 0.1
    assert PAPER_SETTINGS["mpgd"]["rho"] == 15.0 and PAPER_SETTINGS["freedom"]["rho"] == 0.2
    assert paper_settings("none") == {}


def test_paper_replaces_the_presets_defaults_and_user_parameters_win():
    from pipelines.presets import DefaultsOnly

    micro = DefaultsOnly("micro")
    shipped = resolve_params("titan", {}, micro, "t2v")
    assert shipped["update"] == "rms" and shipped["trust"] == 1.0  # the preset's own t2v setting
    paper = resolve_params("titan", {}, micro, "t2v", paper=True)
    assert {k: paper[k] for k in PAPER_SETTINGS["titan"]} == PAPER_SETTINGS["titan"]
    mine = resolve_params("titan", {"step_size": "0.3", "trust": 2}, micro, "t2v", paper=True)
    assert mine["step_size"] == 0.3 and mine["trust"] == 2.0 and mine["update"] == "sign"
    tfg = resolve_params("tfg", {}, micro, "style", paper=True)  # the micro preset's rms / μ̄ = 0.05 are dropped
    assert tfg["normalize"] == "none" and tfg["mu"] == 2.0


def _report(preset, **kw) -> dict:
    gen = run(validate(GenerationRequest(task="t2v", prompt=PROMPT, method="titan", steps=4, **kw), preset), preset)
    for _ in gen:
        pass
    return build_report(gen)


def test_with_paper_the_trust_region_never_caps():
    """A tiny-preset TITAN run: the shipped default (x0 form, λ = 5, trust 1) is capped on its guided steps; the
    paper's (sign form, λ = 0.1, unbounded) on none, and the report says which settings ran."""
    from pipelines.presets import load_preset

    tiny = load_preset("tiny", device="cpu")
    default = _report(tiny)
    assert default["paper"] is False and "paper_settings" not in default
    assert default["trust_region"]["capped"] >= 1, default["trust_region"]
    paper = _report(tiny, paper=True)
    assert paper["paper"] is True and paper["paper_settings"] == PAPER_SETTINGS["titan"]
    assert paper["params"]["trust"] == 0.0 and paper["params"]["update"] == "sign"
    tr = paper["trust_region"]
    assert tr["bounded"] >= 1 and tr["capped"] == 0, tr
    from pipelines.request import summary_text

    assert "paper settings: trust 0.0, guess direct" in summary_text(paper)
    assert "paper settings" not in summary_text(default)


def test_cli_paper_flag_with_a_param_override(tmp_path):
    from pipelines.cli import build_parser

    args = ["generate", "--task", "t2v", "--prompt", PROMPT, "--out", "o.mp4", "--report", "o.json"]
    assert build_parser().parse_args(args).paper is False and build_parser().parse_args(args + ["--paper"]).paper
    rep = tmp_path / "o.json"
    r = _cli("generate", "--preset", "tiny", "--task", "t2v", "--prompt", PROMPT, "--method", "titan", "--steps", 2,
             "--paper", "--param", "step_size=0.3", "--out", tmp_path / "o.mp4", "--report", rep)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(rep.read_text())
    assert data["paper"] is True
    assert data["params"]["step_size"] == 0.3 and data["params"]["update"] == "sign" and data["params"]["trust"] == 0
    assert data["paper_settings"] == {**PAPER_SETTINGS["titan"], "step_size": 0.3}  # the settings that ran
    assert data["trust_region"]["capped"] == 0


def test_a_method_spec_turns_paper_on(preset):
    from pipelines.evaluation.specs import parse_spec

    method, params, request = parse_spec("mpgd[paper=1,rho=3]")
    assert method == "mpgd" and params == {"rho": 3} and request == {"paper": 1}
    p = validate(GenerationRequest(task="t2v", prompt=PROMPT, method=method, params=params, steps=2, **request),
                 preset)
    assert p.request.paper is True
    assert p.params["rho"] == 3.0 and p.params["trust"] == 0.0 and p.params["scale"] == "cfg"


def test_the_api_field_is_checked_and_named(preset):
    fields = check_fields("t2v", {"prompt": PROMPT, "paper": "true", "params": {"step_size": 0.2}}, preset)
    req = to_request("t2v", fields)
    assert req.paper is True and req.params == {"step_size": 0.2}
    assert check_fields("t2v", {"prompt": PROMPT}, preset)["paper"] is False
    for bad in ("maybe", [1], 2):
        with pytest.raises(RequestError) as e:
            check_fields("t2v", {"prompt": PROMPT, "paper": bad}, preset)
        assert e.value.field == "paper" and str(e.value).startswith("paper: expected true or false"), str(e.value)
    with pytest.raises(RequestError) as e:  # a Python caller that skips the named-fields layer
        validate(GenerationRequest(task="t2v", prompt=PROMPT, method="titan", paper="maybe"), preset)
    assert e.value.field == "paper"


def test_the_page_checkbox_replaces_the_sliders_for_what_the_paper_states():
    from pipelines.studio.handlers import widget_fields

    page = {"method": "titan", "paper": True, "titan__step_size": 5.0, "titan__start_step": 1, "mpgd__rho": 2.0}
    assert widget_fields(page)["params"] == {"start_step": 1}
    assert widget_fields({**page, "paper": False})["params"] == {"step_size": 5.0, "start_step": 1}


def test_reloading_a_run_from_the_history_restores_the_checkbox():
    from pipelines.studio.history import settings_from_report

    base = {"task": "t2v", "method": "titan", "seed": 0, "steps": 2, "params": {"trust": 0.0}}
    assert settings_from_report({**base, "paper": True})["paper"] is True
    assert settings_from_report(base)["paper"] is False  # an older report: the shipped defaults ran


def _doc_tables() -> dict[str, dict[str, str]]:
    text = (ROOT / "docs" / "methods.md").read_text()
    body = text.split("<!-- paper-table:start -->", 1)[1].split("<!-- paper-table:end -->", 1)[0]
    out: dict[str, dict[str, str]] = {}
    method = None
    for line in body.splitlines():
        head = re.fullmatch(r"\*\*`(\w+)`\*\*", line.strip())
        if head:
            method = head.group(1)
            out[method] = {}
            continue
        row = re.match(r"\| `(\w+)` \| `([^`]*)`", line)
        if row and method:
            out[method][row.group(1)] = row.group(2)
    return out


def test_the_docs_table_is_the_dict():
    shown = {m: {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in s.items()}
             for m, s in PAPER_SETTINGS.items()}
    assert _doc_tables() == shown
    assert set(DEVIATION_REASONS) <= set(PAPER_SOURCES)
    assert all(set(r) <= set(PAPER_SOURCES[m]) for m, r in DEVIATION_REASONS.items())
