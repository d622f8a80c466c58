"""AWS Systems Manager Automation as runbook steps (kind ``aws_ssm``, capability
``aws_ssm``): ``StartAutomationExecution`` (document, parameters, a client token derived
from the drbot request and step, so a retried start does not start twice), then
``GetAutomationExecution`` until a final status; ``StopAutomationExecution`` when the
step's time runs out or the run is stopped.

Each drbot region runs its executions in one AWS region: ``regions`` maps them (default:
the drbot region's name is the AWS region). Clients are per AWS region, created on first
use; an injected client serves every region (tests).
"""
from __future__ import annotations

import threading
import uuid
from typing import Any

from integrations.aws.session import AwsBackend, translate_error
from integrations.base import ActionResult, BackendOptions, CheckResult, ErrorKind, IntegrationError
from integrations.steps import SSM
from integrations.steps.calls import SsmCall
from integrations.steps.polling import Overdue, follow

SUCCESS = {"Success", "Completed"}
FINAL = SUCCESS | {"Failed", "TimedOut", "Cancelled", "Rejected", "Exited", "ChangeCalendarOverrideRejected"}
_TOKENS = uuid.UUID("6f1c1c52-6a8e-4d53-9d0a-5d3b0b8f9e11")


class SsmOptions(BackendOptions):
    regions: dict[str, str] = {}
    """drbot region -> AWS region of its executions; default: the same name."""
    endpoint_url: str | None = None


class SsmAutomation(AwsBackend):
    """Starts Automation executions and follows them to their end."""

    kind = SSM
    title = "SSM Automation"
    Options = SsmOptions
    capabilities = frozenset({SSM})
    boto3_service = "ssm"
    options: SsmOptions

    def __init__(self, name: str, options: SsmOptions, client: Any = None):
        super().__init__(name, options, client)
        self._clients: dict[str, Any] = {}

    def aws_region(self, region: str) -> str:
        return self.options.regions.get(region, region)

    def client(self, region: str) -> Any:  # type: ignore[override]  # one per AWS region
        with self._lock:
            if self._client is not None:
                return self._client
            aws = self.aws_region(region)
            if aws not in self._clients:
                self._clients[aws] = self._new_client(aws)
            return self._clients[aws]

    def link(self, region: str, execution_id: str) -> str:
        aws = self.aws_region(region)
        return f"https://{aws}.console.aws.amazon.com/systems-manager/automation/execution/{execution_id}?region={aws}"

    def run(self, region: str, call: SsmCall, budget: float, interval: float = 5.0, notes: dict | None = None,
            stop: threading.Event | None = None, dry_run: bool = False) -> ActionResult:
        notes = {} if notes is None else notes
        aws = self.aws_region(region)
        shown = ", ".join(f"{k}={','.join(v)}" for k, v in call.parameters.items()) or "no parameters"
        if dry_run:
            return ActionResult(f"would start SSM Automation {call.document} in {aws} ({shown}) and wait for it",
                                True, False, {"document": call.document, "aws_region": aws})
        args: dict[str, Any] = {"DocumentName": call.document, "Parameters": call.parameters}
        if call.document_version:
            args["DocumentVersion"] = call.document_version
        if call.key:
            args["ClientToken"] = str(uuid.uuid5(_TOKENS, call.key))
        where = f"SSM Automation {call.document} in {aws}"
        try:
            execution_id = self.client(region).start_automation_execution(**args)["AutomationExecutionId"]
        except Exception as exc:
            raise translate_error(exc, f"{self.name}: start {where}") from exc
        notes |= {"execution_id": execution_id, "link": self.link(region, execution_id), "document": call.document}
        execution = self._follow(region, execution_id, budget, interval, stop)
        status = execution.get("AutomationExecutionStatus", "")
        outputs = {k: ",".join(v)[:200] for k, v in list((execution.get("Outputs") or {}).items())[:20]}
        details = {"execution_id": execution_id, "link": self.link(region, execution_id), "status": status,
                   "outputs": outputs, "aws_region": aws}
        notes |= {"status": status, "outputs": outputs}
        if status not in SUCCESS:
            raise IntegrationError(f"{self.name}: {where} ({execution_id}) ended {status}: "
                                   f"{execution.get('FailureMessage') or 'no message'}", ErrorKind.PERMANENT)
        return ActionResult(f"{where} ({execution_id}) succeeded: {details['link']}", False, True, details)

    def _get(self, region: str, execution_id: str) -> dict[str, Any]:
        try:
            return self.client(region).get_automation_execution(
                AutomationExecutionId=execution_id)["AutomationExecution"]
        except Exception as exc:
            raise translate_error(exc, f"{self.name}: read execution {execution_id}") from exc

    def _follow(self, region: str, execution_id: str, budget: float, interval: float,
                stop: threading.Event | None) -> dict[str, Any]:
        try:
            return follow(lambda: self._get(region, execution_id),
                          lambda ex: ex.get("AutomationExecutionStatus") in FINAL, budget=budget, interval=interval,
                          clock=self._clock, sleep=self._sleep, stop=stop)
        except Overdue as late:
            self.stop(region, execution_id)
            why = "the run was stopped" if late.stopped else f"it did not end within {budget:g}s"
            raise IntegrationError(f"{self.name}: execution {execution_id} stopped: {why} "
                                   f"(status {late.last.get('AutomationExecutionStatus', '')})",
                                   ErrorKind.TRANSIENT) from None

    def stop(self, region: str, execution_id: str) -> None:
        try:
            self.client(region).stop_automation_execution(AutomationExecutionId=execution_id, Type="Cancel")
        except Exception as exc:
            raise translate_error(exc, f"{self.name}: stop execution {execution_id}") from exc

    def check(self) -> CheckResult:
        return CheckResult(True, f"{self.name}: executions are started when a step runs (nothing to read before).")
