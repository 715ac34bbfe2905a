"""The search functions' readable sources and the copies their migrations froze agree."""

import re
from pathlib import Path

import pytest

import pytake_contacts

PACKAGE = Path(pytake_contacts.__file__).parent
SOURCES = sorted((PACKAGE / "sql").glob("*.sql"))
FROZEN = PACKAGE / "migrations" / "sql"
VERSIONS = PACKAGE / "migrations" / "versions"


def frozen_copies(function: str) -> list[Path]:
    return sorted(FROZEN.glob(f"[0-9][0-9][0-9][0-9]_{function}.sql"))


def test_every_source_defines_the_function_it_is_named_after() -> None:
    assert SOURCES, "no sources under pytake_contacts/sql"
    for source in SOURCES:
        defined = re.search(r"CREATE OR REPLACE FUNCTION (\w+)\s*\(", source.read_text())
        assert defined is not None and defined.group(1) == source.stem, source.name


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_newest_frozen_copy_is_the_source(source: Path) -> None:
    copies = frozen_copies(source.stem)
    assert copies, f"{source.name} was never frozen by a migration"
    assert copies[-1].read_text() == source.read_text(), (
        f"sql/{source.name} changed since revision {copies[-1].name[:4]} froze it: add a "
        f"revision that freezes it (migrations/sql/<revision>_{source.name}) and executes it"
    )


def test_every_frozen_copy_is_executed_by_its_own_revision() -> None:
    migrations = {p.name.split("_")[1]: p.read_text() for p in VERSIONS.glob("*.py")}
    for copy in sorted(FROZEN.glob("*.sql")):
        revision, name = copy.stem.split("_", 1)
        assert f'"{copy.stem}"' in migrations.get(revision, ""), copy.name
        assert (PACKAGE / "sql" / f"{name}.sql").exists(), f"{name} has no source"
