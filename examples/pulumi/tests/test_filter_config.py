"""Tests of the filter config validation on its own, without Pulumi."""

import json
from pathlib import Path

import pytest
import yaml

import filter_config
from filter_config import FilterConfigError, FilterSchemaError

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPOSITORY_ROOT / "kong" / "sliding_window_rate_limit.meta.json"
KONG_YML = REPOSITORY_ROOT / "kong" / "kong.yml"


@pytest.fixture(scope="module")
def schema() -> dict:
    return filter_config.load_schema(SCHEMA_PATH)


def kong_yml_filter_configs() -> list:
    """Return every sliding_window_rate_limit config in the bundled declarative config."""
    declarative = yaml.safe_load(KONG_YML.read_text(encoding="utf-8"))
    configs = []
    for service in declarative["services"]:
        for route in service.get("routes", []):
            for chain in route.get("filter_chains", []):
                for chained_filter in chain["filters"]:
                    if chained_filter["name"] == filter_config.FILTER_NAME:
                        configs.append(pytest.param(chained_filter["config"], id=route["name"]))
    return configs


def test_kong_yml_has_filter_configs():
    assert len(kong_yml_filter_configs()) >= 1


@pytest.mark.parametrize("config", kong_yml_filter_configs())
def test_kong_yml_configs_accepted(schema, config):
    filter_config.validate_filter_config(config, schema)


VALID_CONFIGS = [
    pytest.param({"second": 10, "minute": 10}, id="equal-limits"),
    pytest.param({"second": 10, "minute": None, "windows": None, "plans": None}, id="null-fields"),
    pytest.param({"windows": [{"seconds": 30, "limit": 5}, {"seconds": 10, "limit": 5}]}, id="windows-any-order"),
    pytest.param({"limit_by": "header", "header_name": "X-API-Key", "hour": 1000}, id="header"),
    pytest.param(
        {
            "minute": 10,
            "tokens": {"minute": 1000, "hour": 20000},
            "plans": {
                "members": {"a": "pro", "b": "pro"},
                "limits": {"pro": {"minute": 100, "tokens": {"minute": 5000}}},
            },
        },
        id="tokens-and-plans",
    ),
]


@pytest.mark.parametrize("config", VALID_CONFIGS)
def test_valid_config_accepted(schema, config):
    filter_config.validate_filter_config(config, schema)


INVALID_CONFIGS = [
    pytest.param([], "", "[] is not of type object", id="not-an-object"),
    pytest.param({"second": True}, "second", "true is not of type integer or null", id="boolean-limit"),
    pytest.param({"second": 1.5}, "second", "1.5 is not of type integer or null", id="fractional-limit"),
    pytest.param({"windows": []}, "windows", "has 0 items, fewer than the minimum of 1", id="empty-windows"),
    pytest.param({"windows": [{"seconds": 10}]}, "windows[0].limit", "required but missing", id="window-without-limit"),
    pytest.param(
        {"second": 5, "windows": [{"seconds": 40000000, "limit": 9}]},
        "windows[0].seconds",
        "40000000 is greater than the maximum of 31536000",
        id="window-too-long",
    ),
    pytest.param(
        {"second": 5, "windows": [{"seconds": 30, "limit": 9}, {"seconds": 30, "limit": 10}]},
        "windows[1].seconds",
        "30 seconds is also the length of 'windows[0].seconds'",
        id="two-custom-windows-one-length",
    ),
    pytest.param({"second": 5, "error_code": 200}, "error_code", "200 is less than the minimum of 400", id="error-code"),
    pytest.param({"second": 5, "tokens": {"source": "fixed"}}, "tokens", "no limit set", id="tokens-without-limit"),
    pytest.param(
        {"second": 5, "tokens": {"minute": 5, "source": "header"}},
        "tokens.header_name",
        'required when source is "header"',
        id="token-header-without-name",
    ),
    pytest.param(
        {"second": 5, "plans": {"members": {}}},
        "plans.limits",
        "required but missing",
        id="plans-without-limits",
    ),
    pytest.param(
        {"second": 5, "plans": {"members": {}, "limits": {"no spaces": {"second": 9}}}},
        "plans.limits",
        'the name "no spaces" does not match the pattern',
        id="bad-plan-name",
    ),
    pytest.param(
        {"second": 5, "plans": {"members": ["key"], "limits": {"pro": {"second": 9}}}},
        "plans.members",
        "the value is not of type object",
        id="members-not-an-object",
    ),
]


@pytest.mark.parametrize(("config", "field", "problem"), INVALID_CONFIGS)
def test_invalid_config_rejected(schema, config, field, problem):
    with pytest.raises(FilterConfigError) as raised:
        filter_config.validate_filter_config(config, schema)

    assert raised.value.field == field
    assert problem in raised.value.problem


def test_members_list_not_shown(schema):
    config = {"second": 5, "plans": {"members": ["sk-live-4f9a"], "limits": {"pro": {"second": 9}}}}
    with pytest.raises(FilterConfigError) as raised:
        filter_config.validate_filter_config(config, schema)

    assert "sk-live-4f9a" not in str(raised.value)


def test_empty_string_message(schema):
    with pytest.raises(FilterConfigError) as raised:
        filter_config.validate_filter_config({"second": 5, "error_message": ""}, schema)

    assert raised.value.problem == '"" is shorter than the minimum length of 1'


def test_long_value_is_cut(schema):
    with pytest.raises(FilterConfigError) as raised:
        filter_config.validate_filter_config({"second": 5, "log_level": "x" * 200}, schema)

    assert raised.value.problem.startswith('"' + "x" * 56 + '... is not one of: "debug"')


def test_config_has_plan_members():
    assert filter_config.config_has_plan_members({"plans": {"members": {"a": "pro"}}})
    assert not filter_config.config_has_plan_members({"plans": {"members": {}}})
    assert not filter_config.config_has_plan_members({"plans": None})
    assert not filter_config.config_has_plan_members({"second": 5})


def test_load_schema_missing_file(tmp_path: Path):
    with pytest.raises(FilterSchemaError, match="cannot read the filter schema .*set filterSchemaPath"):
        filter_config.load_schema(tmp_path / "absent.meta.json")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param("{not json", "not valid JSON", id="not-json"),
        pytest.param('{"schema": {}}', "expected a JSON object with a 'config_schema' object", id="no-config-schema"),
        pytest.param('{"config_schema": {"type": 5}}', "is not valid under any of the given schemas", id="bad-schema"),
    ],
)
def test_load_schema_invalid_file(tmp_path: Path, content: str, problem: str):
    path = tmp_path / "broken.meta.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(FilterSchemaError, match="invalid filter schema") as raised:
        filter_config.load_schema(path)
    assert problem in str(raised.value)


def test_bundled_schema_is_draft_4():
    meta = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert meta["config_schema"]["$schema"] == "http://json-schema.org/draft-04/schema#"
