"""Which backend class serves each ``kind:``. Modules are imported on first use only."""
from __future__ import annotations

import importlib

from integrations.base import Backend

_KINDS: dict[str, str] = {
    "sandbox": "integrations.sandbox:SandboxBackend",
    "cloudwatch": "integrations.aws.cloudwatch:CloudWatchLag",
    "route53_health": "integrations.aws.route53_health:Route53Health",
    "prometheus": "integrations.prometheus:PrometheusLag",
    "http_probe": "integrations.http_probe:HttpProbe",
    "http_json": "integrations.http_json:HttpJson",
    "route53_failover": "integrations.aws.route53_failover:Route53Failover",
    "rds": "integrations.aws.rds:RdsPromoter",
    "aurora_global": "integrations.aws.aurora_global:AuroraGlobal",
    "route53_arc": "integrations.aws.route53_arc:Route53Arc",
    "global_accelerator": "integrations.aws.global_accelerator:GlobalAccelerator",
    "cloudflare_lb": "integrations.cloudflare_lb:CloudflareLb",
    "elasticache_global": "integrations.aws.elasticache_global:ElastiCacheGlobal",
    "statuspage": "integrations.statuspage:Statuspage",
    "pagerduty": "integrations.pager.pagerduty:PagerDuty",
    "opsgenie": "integrations.pager.opsgenie:Opsgenie",
    "s3_archive": "integrations.aws.s3_archive:S3Archive",
    "jira": "integrations.jira:Jira",
    "github_issues": "integrations.github_issues:GithubIssues",
    "http": "integrations.steps.http_call:HttpCall",
    "kubernetes": "integrations.steps.kubernetes:Kubernetes",
    "argo_workflow": "integrations.steps.argo:ArgoWorkflows",
    "aws_ssm": "integrations.aws.ssm:SsmAutomation",
    "rds_snapshots": "integrations.aws.rds_snapshots:RdsSnapshots",
    "aws_backup": "integrations.aws.backup_points:AwsBackupPoints",
    "s3_newest": "integrations.aws.s3_newest:S3Newest",
    "prometheus_backup": "integrations.prometheus_backup:PrometheusBackup",
}


def kinds() -> list[str]:
    return sorted(_KINDS)


def backend_class(kind: str) -> type[Backend]:
    """The class for ``kind``; KeyError when no backend has that kind."""
    module_name, _, attr = _KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)
