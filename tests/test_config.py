"""One home per setting: the app's widgets, the CLI's flags and the checks read rnnlab.config."""

import dataclasses
import re

import pytest

from rnnlab.cli import build_parser
from rnnlab.config import DataSettings, TrainConfig, spec
from rnnlab.errors import SettingError


def _train_parser():
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))


@pytest.mark.parametrize("settings_class", [TrainConfig, DataSettings])
def test_every_cli_flag_has_the_package_default_and_help(settings_class):
    train = _train_parser()
    actions = {a.dest: a for a in train._actions}
    for field in dataclasses.fields(settings_class):
        action = actions[field.name]
        assert action.default == field.default, field.name
        assert field.metadata["help"].replace("%", "%%") in action.help, field.name


def test_every_limit_is_enforced_at_its_edges():
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if meta.get("kind") in ("whole", "number"):
            TrainConfig(**{field.name: meta["low"]}).validate()
            TrainConfig(**{field.name: meta["high"]}).validate()
            above = meta["high"] + (1 if meta["kind"] == "whole" else meta["high"] * 0.01 + 1e-9)
            with pytest.raises(SettingError, match=re.escape(meta["label"])):
                TrainConfig(**{field.name: above}).validate()
        elif meta.get("kind") == "choice":
            for choice in meta["choices"]:
                TrainConfig(**{field.name: choice}).validate()


def test_offered_choices_lie_inside_the_limits_and_include_the_default():
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if meta.get("kind") in ("whole", "number") and meta.get("choices"):
            assert meta["low"] <= min(meta["choices"]) and max(meta["choices"]) <= meta["high"], field.name
            assert field.default in meta["choices"], field.name


def test_the_learning_rate_limit_is_the_same_for_the_cli_and_the_app():
    lr = spec(TrainConfig, "lr")
    assert max(lr["choices"]) == lr["high"] and min(lr["choices"]) == lr["low"]
    from rnnlab.cli import main

    assert main(["train", "--lr", str(lr["high"] * 2), "--epochs", "1"]) == 2
