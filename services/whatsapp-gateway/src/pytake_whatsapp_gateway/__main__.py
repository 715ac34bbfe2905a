"""``python -m pytake_whatsapp_gateway migrate|serve|rotate-secrets``."""

import asyncio
import sys
from pathlib import Path

from pytake_common.cli import run_cli
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_whatsapp_gateway.app import create_app
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.numbers import rotate_secrets

ROTATE = "rotate-secrets"


async def rotate(settings: Settings) -> int:
    """Re-encrypt every stored secret with the first key of PYTAKE_SECRET_KEY."""
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    try:
        async with db.transaction(bypass_rls=True) as session:
            return await rotate_secrets(session, SecretBox(settings.secret))
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == [ROTATE]:
        count = asyncio.run(rotate(Settings()))
        print(f"whatsapp-gateway: secrets of {count} numbers re-encrypted with the first key")
        return
    run_cli(
        args,
        settings_factory=Settings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations_dir=Path(__file__).parent / "migrations",
    )


if __name__ == "__main__":
    main()
