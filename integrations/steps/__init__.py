"""Backends of the runbook steps beyond traffic and the database: HTTP calls, Kubernetes,
Argo Workflows (AWS SSM Automation lives with the AWS backends, integrations/aws/ssm.py).

Each long action takes a time ``budget`` (the step's timeout), polls within it, and on
running out, or when its ``stop`` event is set, cancels what it started (stops the
workflow, the execution) before raising. ``notes``, a dict the caller passes, is filled
as the action goes (what it read before changing, what it started), so a step that fails
or is cut still records what rollback and people need.
"""
from __future__ import annotations

HTTP_CALL = "http"
KUBERNETES = "kubernetes"
ARGO = "argo_workflow"
SSM = "aws_ssm"
