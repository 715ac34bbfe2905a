from pytake_automation.tables import metadata
from pytake_common.migrations import run_env

run_env(metadata)
