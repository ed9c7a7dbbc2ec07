"""One `key=value` parser (`pipelines.keyvalue`): the CLI's `--param`, the training's `--set`, method specs and the
micro guidance bench read their items with it, and read values as they did before."""
import json
import re
from pathlib import Path

import pytest

from pipelines.keyvalue import parse_method_pairs, parse_pairs, read_value, split_pair

ROOT = Path(__file__).resolve().parents[1]


def test_split_pair_strips_and_refuses_what_is_not_key_value():
    assert split_pair(" a = 1 ") == ("a", "1")
    assert split_pair("reward=clip+lvlm borda") == ("reward", "clip+lvlm borda")
    assert split_pair("x=a=b") == ("x", "a=b") and split_pair("x=") == ("x", "")
    for bad in ("novalue", "=1", " = 1"):
        with pytest.raises(ValueError, match=re.escape(f"expected name=value, got {bad!r}")):
            split_pair(bad, "name=value")
    assert parse_pairs(["a=1", "b = x", "a=2"]) == {"a": "2", "b": "x"}


def test_method_pairs_group_by_method():
    assert parse_method_pairs(["titan.step_size=0.1", " titan . update = rms", "mpgd.x=1"]) == {
        "titan": {"step_size": "0.1", "update": "rms"}, "mpgd": {"x": "1"}}
    for bad in ("titan=1", "titan.step_size", ".step_size=1", "titan.=1"):
        with pytest.raises(ValueError, match="expected METHOD.NAME=VALUE"):
            parse_method_pairs([bad])


def _former_spec_value(v: str):  # pipelines/evaluation/specs.py's own reader, before the one parser
    v = v.strip()
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _former_override_value(v: str):  # pipelines/training/config.py's parse_override, before the one parser
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def test_read_value_reads_what_the_spec_and_the_override_readers_read():
    for text in ("1", "-3", "0.1", "1e-3", "true", "false", "rms", "clip+lvlm borda", "paper", "none"):
        assert read_value(text) == _former_spec_value(text) == _former_override_value(text), text
        assert type(read_value(text)) is type(_former_spec_value(text)), text
    for text in ("True", "FALSE", "inf"):  # where the two former readers disagreed, the spec reader's answer
        assert read_value(text) == _former_spec_value(text), text
    for text in ("[1, 2]", "null", '"quoted"', '{"a": 1}'):  # JSON beyond numbers and bools: the override reader's
        assert read_value(text) == _former_override_value(text), text


def test_every_consumer_reads_through_the_one_parser():
    from pipelines.evaluation.specs import parse_spec
    from pipelines.request import RequestError, parse_method_param_strings, parse_param_strings
    from pipelines.training.config import parse_override

    assert parse_spec("titan[update=rms, step_size=0.1, eta=0, mode=reward]") == (
        "titan", {"update": "rms", "step_size": 0.1}, {"eta": 0, "interpolation_mode": "reward"})
    with pytest.raises(ValueError, match=r"method spec 'titan\[oops\]': expected key=value, got 'oops'"):
        parse_spec("titan[oops]")
    assert parse_override("w_dc=0") == ("w_dc", 0) and parse_override("frame_tokens = none") == ("frame_tokens", "none")
    with pytest.raises(ValueError, match="--set: expected key=value"):
        parse_override("w_dc")
    assert parse_param_strings(["a=1", "b-c = x"]) == {"a": "1", "b_c": "x"}
    with pytest.raises(RequestError, match="--param: expected name=value"):
        parse_param_strings(["novalue"])
    with pytest.raises(RequestError, match="--param: expected METHOD.NAME=VALUE"):
        parse_method_param_strings(["titan=1"])
    # no other hand-made key=value split in the library or the bench scripts
    for path in [*ROOT.glob("pipelines/**/*.py"), *ROOT.glob("rewards/*.py"), *ROOT.glob("bench/*.py")]:
        if path.name == "keyvalue.py":
            continue
        text = path.read_text()
        assert 'split("=", 1)' not in text and 'partition("=")' not in text, path
