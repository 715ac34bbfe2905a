"""``python -m pytake_auth migrate|serve|create-super-admin``."""

import sys
from pathlib import Path

from pytake_auth import bootstrap
from pytake_auth.app import create_app
from pytake_auth.config import Settings
from pytake_common.cli import run_cli


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == [bootstrap.COMMAND]:
        sys.exit(bootstrap.main(argv[1:]))
    run_cli(
        argv,
        settings_factory=Settings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations_dir=Path(__file__).parent / "migrations",
    )


if __name__ == "__main__":
    main()
