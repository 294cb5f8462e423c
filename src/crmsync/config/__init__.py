"""Configuration: the TOML schema, its validation and the secrets it refers to."""

from crmsync.config.load import ConfigError, Problem, load_config, parse_config
from crmsync.config.model import Config, ObjectSync
from crmsync.config.secrets import Secret, SecretError, read_secret

__all__ = [
    "Config",
    "ConfigError",
    "ObjectSync",
    "Problem",
    "Secret",
    "SecretError",
    "load_config",
    "parse_config",
    "read_secret",
]
