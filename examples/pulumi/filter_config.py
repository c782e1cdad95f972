"""Validation of the sliding_window_rate_limit filter's config before it goes to Kong.

Kong validates a filter's config against the draft-4 JSON Schema under
`config_schema` in the filter's `.meta.json`. The filter applies a few more
rules when it reads the config at start-up. Inside Kong, a config that
fails them makes the route respond with status 500. This module applies the
schema and two of those rules, so `pulumi up` stops with a message that names
the field before anything reaches Kong.

Member identifiers under `plans.members` are never shown in messages, because
they are often API keys. A message names such an entry by its position,
counted from 1 in the order the config gives.
"""

import json
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from jsonschema import Draft4Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

FILTER_NAME = "sliding_window_rate_limit"

# Fields that set a window of fixed length, with that length in seconds.
NAMED_WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# Validators whose own message reports only that some subschema failed. A more
# specific error is reported first when the config has one.
_COMBINING_VALIDATORS = frozenset({"allOf", "anyOf", "oneOf", "not"})

# Maximum length, in characters, of a rejected value shown in a message.
_MAX_SHOWN_CHARS = 60

_MEMBERS_PATH = ("plans", "members")


class FilterConfigError(ValueError):
    """Invalid filter config: the field at fault and what is wrong with it."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        where = f"field '{field}': " if field else ""
        super().__init__(f"invalid filter config: {where}{problem}")


class FilterSchemaError(ValueError):
    """Filter schema file that is missing, unreadable or not a draft-4 JSON Schema."""


def load_schema(path: Path) -> dict:
    """Read the JSON Schema under `config_schema` in a filter's `.meta.json` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FilterSchemaError(
            f"cannot read the filter schema {path}: {error.strerror}; "
            "set filterSchemaPath to the filter's .meta.json file"
        ) from error
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise FilterSchemaError(f"invalid filter schema {path}: not valid JSON ({error})") from error

    schema = meta.get("config_schema") if isinstance(meta, dict) else None
    if not isinstance(schema, dict):
        raise FilterSchemaError(
            f"invalid filter schema {path}: expected a JSON object with a 'config_schema' object"
        )
    try:
        Draft4Validator.check_schema(schema)
    except SchemaError as error:
        raise FilterSchemaError(f"invalid filter schema {path}: {error.message}") from error
    return schema


def validate_filter_config(config: Any, schema: Mapping[str, Any]) -> None:
    """Raise FilterConfigError when the schema or the filter's rules checked here reject `config`.

    The schema catches types, ranges, unknown fields and the conditional
    fields. Two rules that the filter applies at start-up cannot be written in
    draft-4 JSON Schema, so they are checked here in Python. A longer window's
    limit must not be lower than a shorter window's, and no two windows may
    have the same length. Every plan member must name a plan in `plans.limits`.
    """
    errors = list(Draft4Validator(schema).iter_errors(config))
    if errors:
        # min() keeps the first of equally ranked errors, so the report is stable.
        raise _describe(min(errors, key=_error_rank), config)

    # NOTE: the filter also rejects at start-up a `cost` above any request
    # limit, a `tokens.max_cost` above the smallest token limit (or below
    # `tokens.default_cost`), and plan token limits without a top-level
    # `tokens` block. Those rules are not checked here, so such a config
    # reaches Kong, and the route then responds with status 500.
    validate_window_order(config)
    validate_plan_members(config)


def config_has_plan_members(config: Mapping[str, Any]) -> bool:
    """Return whether the config lists plan members, whose identifiers are often API keys."""
    plans = config.get("plans")
    return isinstance(plans, dict) and bool(plans.get("members"))


class _Window(NamedTuple):
    seconds: int
    limit: int
    # Path of the field that sets the limit, and of the one that sets the length.
    limit_path: tuple
    length_path: tuple


def validate_window_order(config: Mapping[str, Any]) -> None:
    """Raise FilterConfigError when a longer window has a lower limit or two windows have one length.

    The filter applies this rule to the request windows and the token windows,
    at the top level and in each plan. Expects a config that passed the schema.
    """
    for path, windows in _window_sets(config):
        ordered = sorted(windows, key=lambda window: window.seconds)
        for shorter, longer in zip(ordered, ordered[1:]):
            if longer.seconds == shorter.seconds:
                raise FilterConfigError(
                    _field_name(longer.length_path),
                    f"{longer.seconds} seconds is also the length of "
                    f"'{_field_name(shorter.length_path)}'; keep one window of each length",
                )
            if longer.limit < shorter.limit:
                raise FilterConfigError(
                    _field_name(longer.limit_path),
                    f"{longer.limit} is below the limit of the shorter {shorter.seconds}-second "
                    f"window ('{_field_name(shorter.limit_path)}' is {shorter.limit}); "
                    "a longer window's limit must not be lower",
                )


def validate_plan_members(config: Mapping[str, Any]) -> None:
    """Raise FilterConfigError when a plan member names a plan missing from `plans.limits`.

    Expects a config that passed the schema.
    """
    plans = config.get("plans")
    if not isinstance(plans, dict):
        return
    limits = plans["limits"]
    for position, plan in enumerate(plans["members"].values(), start=1):
        if plan not in limits:
            known = ", ".join(json.dumps(name) for name in limits)
            raise FilterConfigError(
                "plans.members",
                f"entry {position} names the plan {json.dumps(plan)}, which is not in "
                f"plans.limits; expected one of: {known}",
            )


def _window_sets(config: Mapping[str, Any]) -> Iterator[tuple[tuple, list[_Window]]]:
    """Yield the path and the windows of each object that contains windows."""
    yield from _windows_with_tokens(config, ())
    plans = config.get("plans")
    if isinstance(plans, dict):
        for name, plan_limits in plans["limits"].items():
            yield from _windows_with_tokens(plan_limits, ("plans", "limits", name))


def _windows_with_tokens(limits: Mapping[str, Any], path: tuple) -> Iterator[tuple[tuple, list[_Window]]]:
    yield path, _read_windows(limits, path)
    tokens = limits.get("tokens")
    if isinstance(tokens, dict):
        tokens_path = path + ("tokens",)
        yield tokens_path, _read_windows(tokens, tokens_path)


def _read_windows(limits: Mapping[str, Any], path: tuple) -> list[_Window]:
    # JSON null counts as absent, as it does for the filter.
    windows = []
    for field, seconds in NAMED_WINDOW_SECONDS.items():
        limit = limits.get(field)
        if limit is not None:
            field_path = path + (field,)
            windows.append(_Window(seconds, limit, field_path, field_path))
    for index, window in enumerate(limits.get("windows") or []):
        item_path = path + ("windows", index)
        windows.append(
            _Window(window["seconds"], window["limit"], item_path + ("limit",), item_path + ("seconds",))
        )
    return windows


def _error_rank(error: ValidationError) -> tuple[bool, int]:
    return error.validator in _COMBINING_VALIDATORS, len(error.absolute_path)


def _describe(error: ValidationError, config: Any) -> FilterConfigError:
    """Turn a schema error into a FilterConfigError that names the field and the value."""
    path = tuple(error.absolute_path)

    if _is_member_path(path) and len(path) > len(_MEMBERS_PATH):
        # Name the entry by position, because its key is a member identifier.
        position = list(config["plans"]["members"]).index(path[2]) + 1
        inner = _describe_value(error, path)
        return FilterConfigError("plans.members", f"entry {position}: {inner}")

    if error.validator == "additionalProperties":
        return _describe_unknown_field(error, path)
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        return FilterConfigError(_field_name(path + (missing,)), "required but missing")
    if error.validator == "anyOf":
        return _describe_any_of(error, path, config)
    return FilterConfigError(_field_name(path), _describe_value(error, path))


def _describe_unknown_field(error: ValidationError, path: tuple) -> FilterConfigError:
    known = list(error.schema.get("properties", {}))
    patterns = list(error.schema.get("patternProperties", {}))
    extra = next(
        name
        for name in error.instance
        if name not in known and not any(re.search(pattern, name) for pattern in patterns)
    )
    if patterns and not known:
        # An object keyed by names, such as plans.limits keyed by plan name.
        return FilterConfigError(
            _field_name(path),
            f"the name {_show(extra)} does not match the pattern {' or '.join(patterns)}",
        )
    return FilterConfigError(
        _field_name(path + (extra,)), f"unknown field; expected one of: {', '.join(known)}"
    )


def _describe_any_of(error: ValidationError, path: tuple, config: Any) -> FilterConfigError:
    branches = error.validator_value
    conditions = [branch["not"] for branch in branches if "not" in branch]
    required = [branch["required"][0] for branch in branches if branch.get("required")]

    if conditions and required:
        # The schema's form of "if <condition field> is <value>, <required field> must be set".
        condition = conditions[0]
        condition_field = condition["required"][0]
        condition_value = condition["properties"][condition_field]["enum"][0]
        return FilterConfigError(
            _field_name(path + (required[0],)),
            f"missing or null; it is required when {condition_field} is {_show(condition_value)}",
        )
    if required and not conditions:
        # The schema's form of "at least one of these fields".
        return FilterConfigError(
            _field_name(path), f"no limit set; set at least one of: {', '.join(required)}"
        )

    # NOTE: the bundled schema has no other anyOf form. For one, this reports the best-matching branch.
    return _describe(best_match(error.context), config)


def _describe_value(error: ValidationError, path: tuple) -> str:
    """Describe what is wrong with the value itself, in JSON terms."""
    value = error.instance
    expected = error.validator_value
    # The members object itself is not shown, because its keys are member identifiers.
    if tuple(path) == _MEMBERS_PATH:
        value_text = "the value"
    else:
        value_text = _show(value)

    match error.validator:
        case "type":
            types = [expected] if isinstance(expected, str) else expected
            return f"{value_text} is not of type {' or '.join(types)}"
        case "enum":
            return f"{value_text} is not one of: {', '.join(json.dumps(item) for item in expected)}"
        case "minimum":
            return f"{value_text} is less than the minimum of {expected}"
        case "maximum":
            return f"{value_text} is greater than the maximum of {expected}"
        case "minLength":
            return f"{value_text} is shorter than the minimum length of {expected}"
        case "maxLength":
            return f"{value_text} is longer than the maximum length of {expected}"
        case "pattern":
            return f"{value_text} does not match the pattern {expected}"
        case "minItems":
            return f"has {len(value)} items, fewer than the minimum of {expected}"
        case "maxItems":
            return f"has {len(value)} items, more than the maximum of {expected}"
        case "minProperties":
            return f"has {len(value)} entries, fewer than the minimum of {expected}"
        case "maxProperties":
            return f"has {len(value)} entries, more than the maximum of {expected}"
    return error.message


def _is_member_path(path: Sequence) -> bool:
    return tuple(path[: len(_MEMBERS_PATH)]) == _MEMBERS_PATH


def _field_name(path: Sequence) -> str:
    """Render a path such as ('windows', 0, 'limit') as `windows[0].limit`."""
    name = ""
    for part in path:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


def _show(value: Any) -> str:
    """Render a value as JSON, cut so that a large value stays readable."""
    text = json.dumps(value)
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 3] + "..."
    return text
