"""Kong resources for the ML model API: a service, its route and the rate-limiting filter.

The filter is attached to the service as a Kong plugin named after the
filter. Kong accepts Wasm filters through the plugins endpoint in 3.9 and
3.10 only. Kong 3.4 to 3.8 take them only as filter chains, which the Kong
provider cannot declare.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_kong as kong

import filter_config

PROGRAM_DIR = Path(__file__).resolve().parent
DEFAULT_SCHEMA_PATH = PROGRAM_DIR.parent.parent / "kong" / f"{filter_config.FILTER_NAME}.meta.json"

SERVICE_NAME = "ml-model-service"
ROUTE_NAME = "ml-model"
ROUTE_PATHS = ["/ml-model"]
ROUTE_METHODS = ["GET", "POST"]
ROUTE_PROTOCOLS = ["http", "https"]
PLUGIN_RESOURCE_NAME = "ml-model-rate-limit"

# The example model server of this repository, as kong/kong.yml addresses it.
DEFAULT_MODEL_HOST = "model"
DEFAULT_MODEL_PORT = 8080
DEFAULT_MODEL_PATH = "/"

# Filter config used when the filterConfig key is not set: 100 requests per
# second for each client IP. The keys below still change it.
DEFAULT_FILTER_CONFIG = {"second": 100, "limit_by": "ip"}

# Pulumi config keys that each set one filter field, mapped to that field.
INTEGER_FIELD_KEYS = {"second": "second", "minute": "minute"}
STRING_FIELD_KEYS = {"limitBy": "limit_by", "headerName": "header_name"}

# JSON's names for the types json.loads returns, for messages.
JSON_TYPE_NAMES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}

FILTER_CONFIG_KEY = "filterConfig"
SCHEMA_PATH_KEY = "filterSchemaPath"


@dataclass(frozen=True)
class StackSettings:
    """Everything the program reads from Pulumi config, checked but not yet validated against the schema."""

    model_host: str
    model_port: int
    model_path: str
    filter_config: dict
    # True when the filter config must be stored as a Pulumi secret.
    config_is_secret: bool
    schema_path: Path


@dataclass(frozen=True)
class StackResources:
    """The Kong resources the program declares."""

    service: kong.Service
    route: kong.Route
    plugin: kong.Plugin


def main() -> StackResources:
    """Validate the config, declare the service, route and plugin, and export their ids.

    Raises pulumi.RunError, before declaring any resource, when a config key
    or the filter config is invalid.
    """
    config = pulumi.Config()
    try:
        settings = read_settings(config)
        schema = filter_config.load_schema(settings.schema_path)
        filter_config.validate_filter_config(settings.filter_config, schema)
    except (filter_config.FilterConfigError, filter_config.FilterSchemaError) as error:
        raise pulumi.RunError(str(error)) from error

    resources = declare_resources(settings)
    pulumi.export("serviceId", resources.service.id)
    pulumi.export("routeId", resources.route.id)
    pulumi.export("pluginId", resources.plugin.id)
    return resources


def read_settings(config: pulumi.Config) -> StackSettings:
    """Read the model server's address and the filter config from Pulumi config.

    Raises pulumi.RunError for an invalid model address, and pulumi's
    ConfigTypeError for a non-integer modelPort, second or minute.
    """
    model_host = config.get("modelHost", DEFAULT_MODEL_HOST)
    if not model_host.strip():
        raise pulumi.RunError(
            "invalid config key 'modelHost': empty; set the model server's host name or IP address"
        )

    model_port = config.get_int("modelPort", DEFAULT_MODEL_PORT)
    if not 1 <= model_port <= 65535:
        raise pulumi.RunError(
            f"invalid config key 'modelPort': {model_port} is not a TCP port; expected 1 to 65535"
        )

    model_path = config.get("modelPath", DEFAULT_MODEL_PATH)
    if not model_path.startswith("/"):
        raise pulumi.RunError(
            f"invalid config key 'modelPath': {json.dumps(model_path)} does not start with '/'"
        )

    settings_filter_config, config_is_secret = read_filter_config(config)
    return StackSettings(
        model_host=model_host,
        model_port=model_port,
        model_path=model_path,
        filter_config=settings_filter_config,
        config_is_secret=config_is_secret,
        schema_path=read_schema_path(config),
    )


def read_filter_config(config: pulumi.Config) -> tuple[dict, bool]:
    """Assemble the filter config and return it with whether it must stay secret.

    The filterConfig key, when set, is the base config. Without it the base is
    DEFAULT_FILTER_CONFIG. The keys second, minute, limitBy and headerName then
    set their fields, and setting a field both in filterConfig and as a key
    raises pulumi.RunError. The config must stay secret when any key it is
    built from is a Pulumi secret, or when it lists plan members.
    """
    base = read_filter_config_object(config)
    assembled = dict(DEFAULT_FILTER_CONFIG) if base is None else dict(base)
    used_keys = [FILTER_CONFIG_KEY] if base is not None else []

    key_values: dict[str, Any] = {}
    for key in INTEGER_FIELD_KEYS:
        key_values[key] = config.get_int(key)
    for key in STRING_FIELD_KEYS:
        key_values[key] = config.get(key)

    fields = INTEGER_FIELD_KEYS | STRING_FIELD_KEYS
    for key, value in key_values.items():
        if value is None:
            continue
        field = fields[key]
        if base is not None and base.get(field) is not None:
            raise pulumi.RunError(
                f"invalid config: the key '{key}' and {FILTER_CONFIG_KEY}.{field} are both set; "
                "keep one of them"
            )
        assembled[field] = value
        used_keys.append(key)

    key_is_secret = any(pulumi.runtime.is_config_secret(config.full_key(key)) for key in used_keys)
    return assembled, key_is_secret or filter_config.config_has_plan_members(assembled)


def read_filter_config_object(config: pulumi.Config) -> Optional[dict]:
    """Return the filterConfig key's JSON object, or None when the key is not set."""
    text = config.get(FILTER_CONFIG_KEY)
    if text is None:
        return None
    # The messages leave the value out, because the key may be a secret.
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise pulumi.RunError(
            f"invalid config key '{FILTER_CONFIG_KEY}': not valid JSON ({error}); "
            "set it to a JSON object, such as '{\"minute\": 600}'"
        ) from error
    if not isinstance(value, dict):
        raise pulumi.RunError(
            f"invalid config key '{FILTER_CONFIG_KEY}': expected a JSON object, "
            f"got a JSON {JSON_TYPE_NAMES.get(type(value), type(value).__name__)}"
        )
    return value


def read_schema_path(config: pulumi.Config) -> Path:
    """Return the filter's .meta.json path, from filterSchemaPath (relative to this folder) or the bundled one."""
    override = config.get(SCHEMA_PATH_KEY)
    if not override:
        return DEFAULT_SCHEMA_PATH
    path = Path(override).expanduser()
    return path if path.is_absolute() else PROGRAM_DIR / path


def declare_resources(settings: StackSettings) -> StackResources:
    """Declare the model service, its route and the filter attached to the service."""
    service = kong.Service(
        SERVICE_NAME,
        name=SERVICE_NAME,
        protocol="http",
        host=settings.model_host,
        port=settings.model_port,
        path=settings.model_path,
    )

    route = kong.Route(
        ROUTE_NAME,
        name=ROUTE_NAME,
        paths=ROUTE_PATHS,
        methods=ROUTE_METHODS,
        protocols=ROUTE_PROTOCOLS,
        service_id=service.id,
    )

    config_text = json.dumps(settings.filter_config, sort_keys=True)
    if settings.config_is_secret:
        config_json: pulumi.Input[str] = pulumi.Output.secret(config_text)
        # Kong returns the stored config, which the provider keeps in
        # computed_config; without this it would be saved in plain text.
        options = pulumi.ResourceOptions(additional_secret_outputs=["computed_config"])
    else:
        config_json = config_text
        options = None

    plugin = kong.Plugin(
        PLUGIN_RESOURCE_NAME,
        name=filter_config.FILTER_NAME,
        service_id=service.id,
        config_json=config_json,
        opts=options,
    )
    return StackResources(service=service, route=route, plugin=plugin)
