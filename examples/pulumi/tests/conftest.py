"""Fixtures that run the Pulumi program against Pulumi's mocks, with no Pulumi CLI and no Kong."""

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

import ml_model_stack

# Must match `name` in Pulumi.yaml, because config keys are prefixed with it.
PROJECT = "ml-model-rate-limit"

SERVICE_TYPE = "kong:index/service:Service"
ROUTE_TYPE = "kong:index/route:Route"
PLUGIN_TYPE = "kong:index/plugin:Plugin"


def mock_id(resource_name: str) -> str:
    """Return the id the mocks give the resource with this Pulumi name."""
    return f"{resource_name}-id"


class KongMocks(pulumi.runtime.Mocks):
    """Mocks that record each resource the program registers."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        return mock_id(args.name), dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Mock monitor that also keeps each resource's additional secret outputs, which the mocks do not see."""

    def __init__(self, mocks: KongMocks) -> None:
        super().__init__(mocks)
        self.secret_outputs: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        self.secret_outputs[request.name] = list(request.additionalSecretOutputs)
        return super().RegisterResource(request)


@dataclass
class ProgramRun:
    """What one run of the program registered and exported."""

    mocks: KongMocks
    monitor: RecordingMonitor
    exports: dict[str, Any] = field(default_factory=dict)

    def resources_of_type(self, resource_type: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [resource for resource in self.mocks.resources if resource.typ == resource_type]

    def only(self, resource_type: str) -> pulumi.runtime.MockResourceArgs:
        matches = self.resources_of_type(resource_type)
        assert len(matches) == 1, f"expected one {resource_type}, got {len(matches)}"
        return matches[0]


class ProgramRunner:
    """Runner of ml_model_stack.main() under fresh mocks. `last` is the latest run, also after a failure."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.last: Optional[ProgramRun] = None

    def run(self, config: Optional[dict[str, Any]] = None, secret_keys: Iterable[str] = ()) -> ProgramRun:
        """Run the program with `config`, storing values that are not strings as JSON, as Pulumi does."""
        mocks = KongMocks()
        monitor = RecordingMonitor(mocks)
        run = ProgramRun(mocks=mocks, monitor=monitor)
        self.last = run

        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False, monitor=monitor)
        values = {
            f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in (config or {}).items()
        }
        pulumi.runtime.set_all_config(values, [f"{PROJECT}:{key}" for key in secret_keys])

        exported: dict[str, Any] = {}
        self._monkeypatch.setattr(pulumi, "export", exported.__setitem__)

        @pulumi.runtime.test
        def program() -> Any:
            ml_model_stack.main()
            return pulumi.Output.all(**exported).apply(run.exports.update)

        program()
        return run


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> ProgramRunner:
    return ProgramRunner(monkeypatch)
