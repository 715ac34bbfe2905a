from pathlib import Path

from pytake_common.cli import run_cli
from pytake_integrations.app import create_app
from pytake_integrations.config import Settings


def main() -> None:
    run_cli(
        None,
        settings_factory=Settings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations_dir=Path(__file__).parent / "migrations",
    )


if __name__ == "__main__":
    main()
