"""Tests of the Pulumi program under Pulumi's mocks: resources, links, exports, secrets and rejected configs."""

import json
import shutil
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import rpc

from conftest import PLUGIN_TYPE, ROUTE_TYPE, SERVICE_TYPE, ProgramRunner, mock_id

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "kong" / "sliding_window_rate_limit.meta.json"

PLANS_CONFIG = {
    "second": 10,
    "minute": 300,
    "limit_by": "header",
    "header_name": "X-API-Key",
    "plans": {
        "members": {"team-pro-key": "pro"},
        "limits": {"pro": {"second": 50, "minute": 3000}},
    },
}


def plugin_config(run) -> dict:
    """Return the plugin's config_json as a dict, unwrapping it when it is a secret."""
    config_json = run.only(PLUGIN_TYPE).inputs["configJson"]
    if rpc.is_rpc_secret(config_json):
        config_json = rpc.unwrap_rpc_secret(config_json)
    return json.loads(config_json)


def test_service_defaults(runner: ProgramRunner):
    service = runner.run().only(SERVICE_TYPE)

    assert service.name == "ml-model-service"
    assert service.inputs["name"] == "ml-model-service"
    assert service.inputs["protocol"] == "http"
    assert service.inputs["host"] == "model"
    assert service.inputs["port"] == 8080
    assert service.inputs["path"] == "/"


def test_service_uses_model_config(runner: ProgramRunner):
    service = runner.run(
        {"modelHost": "models.internal", "modelPort": 9000, "modelPath": "/v1"}
    ).only(SERVICE_TYPE)

    assert service.inputs["host"] == "models.internal"
    assert service.inputs["port"] == 9000
    assert service.inputs["path"] == "/v1"


def test_route_arguments(runner: ProgramRunner):
    route = runner.run().only(ROUTE_TYPE)

    assert route.inputs["name"] == "ml-model"
    assert route.inputs["paths"] == ["/ml-model"]
    assert route.inputs["methods"] == ["GET", "POST"]
    assert route.inputs["protocols"] == ["http", "https"]


def test_route_links_to_service(runner: ProgramRunner):
    run = runner.run()

    assert run.only(ROUTE_TYPE).inputs["serviceId"] == mock_id(run.only(SERVICE_TYPE).name)


def test_plugin_links_to_service_only(runner: ProgramRunner):
    run = runner.run()
    plugin = run.only(PLUGIN_TYPE)

    assert plugin.inputs["serviceId"] == mock_id(run.only(SERVICE_TYPE).name)
    assert "routeId" not in plugin.inputs
    assert "consumerId" not in plugin.inputs


def test_plugin_name_is_filter_name(runner: ProgramRunner):
    assert runner.run().only(PLUGIN_TYPE).inputs["name"] == "sliding_window_rate_limit"


def test_plugin_default_config(runner: ProgramRunner):
    assert plugin_config(runner.run()) == {"second": 100, "limit_by": "ip"}


def test_plugin_config_from_keys(runner: ProgramRunner):
    run = runner.run({"second": 20, "minute": 600, "limitBy": "header", "headerName": "X-API-Key"})

    assert plugin_config(run) == {
        "second": 20,
        "minute": 600,
        "limit_by": "header",
        "header_name": "X-API-Key",
    }


def test_filter_config_key_replaces_defaults(runner: ProgramRunner):
    run = runner.run({"filterConfig": {"hour": 5000, "limit_by": "consumer"}, "minute": 200})

    assert plugin_config(run) == {"hour": 5000, "limit_by": "consumer", "minute": 200}


def test_exports_resource_ids(runner: ProgramRunner):
    run = runner.run()

    assert run.exports == {
        "serviceId": mock_id(run.only(SERVICE_TYPE).name),
        "routeId": mock_id(run.only(ROUTE_TYPE).name),
        "pluginId": mock_id(run.only(PLUGIN_TYPE).name),
    }


def test_exactly_three_resources(runner: ProgramRunner):
    run = runner.run()

    assert sorted(resource.typ for resource in run.mocks.resources) == sorted(
        [SERVICE_TYPE, ROUTE_TYPE, PLUGIN_TYPE]
    )


def test_config_without_secrets_stays_plain(runner: ProgramRunner):
    run = runner.run({"second": 20, "limitBy": "header", "headerName": "X-API-Key"})
    plugin = run.only(PLUGIN_TYPE)

    assert not rpc.is_rpc_secret(plugin.inputs["configJson"])
    assert run.monitor.secret_outputs[plugin.name] == []


def test_plan_members_make_config_secret(runner: ProgramRunner):
    run = runner.run({"filterConfig": PLANS_CONFIG})
    plugin = run.only(PLUGIN_TYPE)

    assert rpc.is_rpc_secret(plugin.inputs["configJson"])
    assert run.monitor.secret_outputs[plugin.name] == ["computedConfig"]
    assert plugin_config(run) == PLANS_CONFIG


def test_secret_key_makes_config_secret(runner: ProgramRunner):
    run = runner.run(
        {"limitBy": "header", "headerName": "X-Tenant"}, secret_keys=["headerName"]
    )
    plugin = run.only(PLUGIN_TYPE)

    assert rpc.is_rpc_secret(plugin.inputs["configJson"])
    assert run.monitor.secret_outputs[plugin.name] == ["computedConfig"]


def test_secret_filter_config_key_stays_secret(runner: ProgramRunner):
    run = runner.run({"filterConfig": {"minute": 60}}, secret_keys=["filterConfig"])

    assert rpc.is_rpc_secret(run.only(PLUGIN_TYPE).inputs["configJson"])


def test_plans_without_members_stay_plain(runner: ProgramRunner):
    config = {"second": 10, "plans": {"members": {}, "limits": {"pro": {"second": 50}}}}
    run = runner.run({"filterConfig": config})

    assert not rpc.is_rpc_secret(run.only(PLUGIN_TYPE).inputs["configJson"])


INVALID_FILTER_CONFIGS = [
    pytest.param({"second": 0}, "second", "0 is less than the minimum of 1", id="zero-limit"),
    pytest.param({"minute": -5}, "minute", "-5 is less than the minimum of 1", id="negative-limit"),
    pytest.param(
        {"filterConfig": {"second": 10, "rate": 5}},
        "rate",
        "unknown field; expected one of: second, minute",
        id="unknown-field",
    ),
    pytest.param(
        {"filterConfig": {"second": 10, "month": 5}}, "month", "unknown field", id="kong-only-field"
    ),
    pytest.param(
        {"limitBy": "header"},
        "header_name",
        'required when limit_by is "header"',
        id="header-without-header-name",
    ),
    pytest.param(
        {"limitBy": "path"}, "path", 'required when limit_by is "path"', id="path-without-path"
    ),
    pytest.param({"limitBy": "user"}, "limit_by", '"user" is not one of: "ip", "header"', id="unknown-limit-by"),
    pytest.param(
        {"limitBy": "header", "headerName": "X API Key"},
        "header_name",
        '"X API Key" does not match the pattern',
        id="header-name-with-spaces",
    ),
    pytest.param(
        {"second": 100, "minute": 50},
        "minute",
        "50 is below the limit of the shorter 1-second window ('second' is 100)",
        id="longer-window-lower-limit",
    ),
    pytest.param(
        {"filterConfig": {"minute": 100, "windows": [{"seconds": 60, "limit": 200}]}},
        "windows[0].seconds",
        "60 seconds is also the length of 'minute'",
        id="two-windows-one-length",
    ),
    pytest.param(
        {"filterConfig": {"second": 10, "windows": [{"seconds": 30, "limit": 5}]}},
        "windows[0].limit",
        "5 is below the limit of the shorter 1-second window",
        id="custom-window-lower-limit",
    ),
    pytest.param(
        {"filterConfig": {"second": 10, "tokens": {"second": 500, "minute": 400}}},
        "tokens.minute",
        "400 is below",
        id="token-window-lower-limit",
    ),
    pytest.param(
        {
            "filterConfig": {
                "second": 10,
                "plans": {"members": {}, "limits": {"pro": {"second": 50, "hour": 20}}},
            }
        },
        "plans.limits.pro.hour",
        "20 is below",
        id="plan-window-lower-limit",
    ),
    pytest.param(
        {
            "filterConfig": {
                "second": 10,
                "plans": {"members": {"key-a": "pro", "key-b": "gold"}, "limits": {"pro": {"second": 50}}},
            }
        },
        "plans.members",
        'entry 2 names the plan "gold", which is not in plans.limits; expected one of: "pro"',
        id="member-of-unknown-plan",
    ),
    pytest.param(
        {"filterConfig": {"limit_by": "ip"}},
        "",
        "no limit set; set at least one of: second, minute, hour, day, windows",
        id="no-limit",
    ),
    pytest.param({"filterConfig": {"second": "10"}}, "second", '"10" is not of type integer or null', id="string-limit"),
]


@pytest.mark.parametrize(("config", "field", "problem"), INVALID_FILTER_CONFIGS)
def test_invalid_filter_config_rejected(runner: ProgramRunner, config, field, problem):
    with pytest.raises(pulumi.RunError) as raised:
        runner.run(config)

    message = str(raised.value)
    assert message.startswith("invalid filter config: ")
    if field:
        assert f"field '{field}': " in message
    assert problem in message
    assert runner.last.mocks.resources == []


def test_zero_limit_message_is_exact(runner: ProgramRunner):
    with pytest.raises(pulumi.RunError) as raised:
        runner.run({"second": 0})

    assert str(raised.value) == "invalid filter config: field 'second': 0 is less than the minimum of 1"


def test_messages_hide_member_identifiers(runner: ProgramRunner):
    config = {
        "second": 10,
        "plans": {"members": {"sk-live-4f9a": 7}, "limits": {"pro": {"second": 50}}},
    }
    with pytest.raises(pulumi.RunError) as raised:
        runner.run({"filterConfig": config}, secret_keys=["filterConfig"])

    message = str(raised.value)
    assert "field 'plans.members': entry 1: 7 is not of type string" in message
    assert "sk-live-4f9a" not in message


INVALID_SETTINGS = [
    pytest.param({"modelPort": 0}, "invalid config key 'modelPort': 0 is not a TCP port", id="port-zero"),
    pytest.param({"modelPort": 70000}, "invalid config key 'modelPort': 70000", id="port-too-large"),
    pytest.param({"modelPort": "http"}, "is not a valid 'int'", id="port-not-integer"),
    pytest.param({"second": "1.5"}, "is not a valid 'int'", id="limit-not-integer"),
    pytest.param({"modelPath": "v1"}, "invalid config key 'modelPath': \"v1\" does not start with '/'", id="relative-path"),
    pytest.param({"modelHost": " "}, "invalid config key 'modelHost': empty", id="empty-host"),
    pytest.param(
        {"filterConfig": {"second": 10}, "second": 20},
        "the key 'second' and filterConfig.second are both set",
        id="field-set-twice",
    ),
    pytest.param({"filterConfig": "{second: 10"}, "invalid config key 'filterConfig': not valid JSON", id="config-not-json"),
    pytest.param({"filterConfig": [1, 2]}, "expected a JSON object, got a JSON array", id="config-not-object"),
    pytest.param(
        {"filterSchemaPath": "missing/schema.meta.json"},
        "cannot read the filter schema",
        id="schema-not-found",
    ),
]


@pytest.mark.parametrize(("config", "problem"), INVALID_SETTINGS)
def test_invalid_settings_rejected(runner: ProgramRunner, config, problem):
    with pytest.raises(pulumi.RunError) as raised:
        runner.run(config)

    assert problem in str(raised.value)
    assert runner.last.mocks.resources == []


def test_bad_secret_json_hidden(runner: ProgramRunner):
    with pytest.raises(pulumi.RunError) as raised:
        runner.run({"filterConfig": '{"plans": sk-live-4f9a'}, secret_keys=["filterConfig"])

    assert "not valid JSON" in str(raised.value)
    assert "sk-live-4f9a" not in str(raised.value)


def test_schema_path_override_is_used(runner: ProgramRunner, tmp_path: Path):
    meta = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    meta["config_schema"]["properties"]["second"]["maximum"] = 50
    stricter = tmp_path / "stricter.meta.json"
    stricter.write_text(json.dumps(meta), encoding="utf-8")

    with pytest.raises(pulumi.RunError) as raised:
        runner.run({"filterSchemaPath": str(stricter)})

    assert "field 'second': 100 is greater than the maximum of 50" in str(raised.value)


def test_relative_schema_path_from_program_folder(runner: ProgramRunner):
    # The bundled schema, reached from examples/pulumi by a relative path.
    run = runner.run({"filterSchemaPath": "../../kong/sliding_window_rate_limit.meta.json"})

    assert plugin_config(run) == {"second": 100, "limit_by": "ip"}


def test_schema_copy_elsewhere_accepted(runner: ProgramRunner, tmp_path: Path):
    copy = tmp_path / "filters" / "sliding_window_rate_limit.meta.json"
    copy.parent.mkdir()
    shutil.copy(SCHEMA_PATH, copy)

    run = runner.run({"filterSchemaPath": str(copy), "second": 5})

    assert plugin_config(run) == {"second": 5, "limit_by": "ip"}
