"""Pager backends: PagerDuty (Events API v2) and Opsgenie (Alert API), capability PAGER."""
