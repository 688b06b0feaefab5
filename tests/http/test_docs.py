"""The examples of docs/http.md parse and build what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from eventscale.cli.intercept import add_parser
from eventscale.http import HTTPScaler, load_http_scaled_objects
from eventscale.scalers import TriggerContext, create_scaler

PAGE = Path(__file__).resolve().parents[2] / "docs" / "http.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_http_scaled_object_example_parses() -> None:
    docs = [b for b in _blocks("yaml") if "kind: HTTPScaledObject" in b]
    assert docs
    for block in docs:
        (so,) = load_http_scaled_objects(block)
        assert so.to_route().upstream == "http://shop:8080"
        spec = so.to_scaled_object_spec()
        assert spec.cooldown_period == 0
        assert spec.triggers[0].metadata["activityWindow"] == "300s"


def test_trigger_example_builds() -> None:
    blocks = [b for b in _blocks("yaml") if "type: http" in b]
    assert blocks
    for block in blocks:
        (trigger,) = yaml.safe_load(block)["triggers"]
        scaler = create_scaler(TriggerContext(metadata=trigger["metadata"], trigger_type="http"))
        assert isinstance(scaler, HTTPScaler)
        assert scaler.config.activity_window == 120
        assert scaler.config.target == 20


def test_every_cli_option_is_documented() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    intercept = add_parser(sub)
    text = PAGE.read_text()
    for action in intercept._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in text, flag
