from pytake_common.db import new_metadata
from pytake_common.migrations import run_env

run_env(new_metadata())
