"""Packaging promises: the public API, import isolation, extras, README == CI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import eventscale

ROOT = Path(__file__).resolve().parent.parent
BROKER_MODULES = (
    "confluent_kafka",
    "aio_pika",
    "aiormq",
    "redis",
    "azure",
    "aiohttp",
    "docker",
    "matplotlib",
    "grpc",
)


def test_all_is_a_sorted_tuple_of_existing_names() -> None:
    assert isinstance(eventscale.__all__, tuple)
    assert list(eventscale.__all__) == sorted(eventscale.__all__, key=str)
    for name in eventscale.__all__:
        assert hasattr(eventscale, name), name


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(eventscale).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    public -= {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    assert public <= set(eventscale.__all__)
    # Lazily loaded names are exported too, and resolve to what their module defines.
    assert set(eventscale.__all__) - {"__version__"} == public | set(eventscale._LAZY)
    for name, module in eventscale._LAZY.items():
        assert getattr(eventscale, name) is getattr(__import__(module, fromlist=[name]), name)


def test_public_names_have_docstrings() -> None:
    for name in eventscale.__all__:
        obj = getattr(eventscale, name)
        if callable(obj):
            assert obj.__doc__, f"eventscale.{name} has no docstring"


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_loads_no_broker_client() -> None:
    out = _python(
        """
        import json, sys
        import eventscale, eventscale.scalers, eventscale.targets
        print(json.dumps(sorted(sys.modules)))
        """
    )
    loaded = json.loads(out)
    offenders = [m for m in loaded if m.split(".")[0] in BROKER_MODULES]
    assert offenders == []


EXTRAS = [
    pytest.param("kafka", "confluent_kafka", "kafka", id="kafka"),
    pytest.param("rabbitmq", "aio_pika", "rabbitmq", id="rabbitmq"),
    pytest.param("redis", "redis", "redis", id="redis"),
    pytest.param("redis-streams", "redis", "redis", id="redis-streams"),
    pytest.param("azure-queue", "azure", "azure", id="azure-queue"),
    pytest.param("azure-servicebus", "azure", "azure", id="azure-servicebus"),
]


@pytest.mark.parametrize(("trigger_type", "module", "extra"), EXTRAS)
def test_missing_extra_names_the_extra(trigger_type: str, module: str, extra: str) -> None:
    out = _python(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r} or name.startswith({module!r} + "."):
                    raise ImportError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, Block())
        from eventscale.errors import ConfigError, MissingExtraError
        from eventscale.scalers import resolve_scaler_class
        try:
            resolve_scaler_class({trigger_type!r}, path="spec.triggers[0].type")
        except MissingExtraError as exc:
            assert isinstance(exc, ConfigError)
            print(exc)
        else:
            print("NO ERROR")
        """
    )
    assert f"pip install 'eventscale[{extra}]'" in out


def test_unknown_trigger_type() -> None:
    from eventscale.errors import ConfigError
    from eventscale.scalers import TriggerContext, create_scaler

    with pytest.raises(ConfigError, match="unknown trigger type 'nope'") as info:
        create_scaler(TriggerContext(trigger_type="nope", path="spec.triggers[3]"))
    assert info.value.path == "spec.triggers[3].type"


def test_register_scaler_refuses_silent_replacement() -> None:
    from eventscale.scalers import register_scaler, registered_types, resolve_scaler_class

    class Custom:
        pass

    register_scaler("test-custom-type", Custom)
    try:
        assert "test-custom-type" in registered_types()
        assert resolve_scaler_class("test-custom-type") is Custom  # type: ignore[comparison-overlap]
        with pytest.raises(ValueError, match="already registered"):
            register_scaler("test-custom-type", Custom)
        with pytest.raises(ValueError, match="already registered"):
            register_scaler("kafka", Custom)
    finally:
        from eventscale import scalers

        scalers._registered.pop("test-custom-type", None)


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(
        rf"<!-- {marker}:start -->\s*```sh\n(.*?)\n```\s*<!-- {marker}:end -->", text, re.DOTALL
    )
    assert match, f"README.md has no {marker} block"
    return match.group(1)


def test_ci_runs_the_readme_test_command() -> None:
    cmd = _readme_block("test-command")
    assert "nox -s tests" in cmd
    proc = subprocess.run(
        [
            "bash",
            "-c",
            (
                "sed -n '/<!-- test-command:start -->/,/<!-- test-command:end -->/p' README.md "
                "| sed -n '/^```sh$/,/^```$/p' | sed '1d;$d'"
            ),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == cmd.strip()
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_readme_main_command_runs_the_demo() -> None:
    cmd = _readme_block("main-command")
    assert "eventscale demo" in cmd
