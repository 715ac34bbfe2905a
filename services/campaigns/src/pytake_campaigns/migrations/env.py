from pytake_campaigns.tables import metadata
from pytake_common.migrations import run_env

run_env(metadata)
