from pytake_common.migrations import run_env
from pytake_whatsapp_gateway.tables import metadata

run_env(metadata)
