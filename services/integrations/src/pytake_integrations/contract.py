"""``python -m pytake_integrations.contract``: write the public webhook JSON Schemas.

``schemas/webhooks/<type>.v<N>.json``, one per public event type, generated from
:mod:`pytake_integrations.public` (``make schemas`` runs it); a test fails when the
committed files differ from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pytake_integrations.public import API_VERSION, CATALOG, json_schema


def schemas() -> dict[str, dict[str, Any]]:
    return {f"{t}.v{API_VERSION}.json": json_schema(m) for t, m in sorted(CATALOG.items())}


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):
        stale.unlink()
    for name, schema in schemas().items():
        (directory / name).write_text(dump(schema))
    return len(CATALOG)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "schemas/webhooks")
    print(f"wrote {write(target)} webhook schemas to {target}")
