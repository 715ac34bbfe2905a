from pathlib import Path

from pytake_campaigns.app import create_app
from pytake_campaigns.config import Settings
from pytake_common.cli import run_cli


def main() -> None:
    run_cli(
        None,
        settings_factory=Settings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations_dir=Path(__file__).parent / "migrations",
    )


if __name__ == "__main__":
    main()
