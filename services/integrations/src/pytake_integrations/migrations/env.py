from pytake_common.migrations import run_env
from pytake_integrations.tables import metadata

run_env(metadata)
