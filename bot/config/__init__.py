"""Config: YAML validated into typed models (``models``), loaded with clear errors (``loader``)."""
from bot.config.loader import ConfigError, LoadedConfig, Problem, load_config, parse_config
from bot.config.models import ApprovalPolicy, Config, ServiceConfig

__all__ = ["ApprovalPolicy", "Config", "ConfigError", "LoadedConfig", "Problem", "ServiceConfig",
           "load_config", "parse_config"]
