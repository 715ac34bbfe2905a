"""Every service's migration chain is one line: a single head, no revision id used twice.

Two branches that each add "the next" revision merge cleanly in git and leave alembic with
two heads, and then no database of that service can be migrated.
"""

import re
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parents[2]
CHAINS = sorted(ROOT.glob("services/*/src/pytake_*/migrations"))


@pytest.mark.parametrize("migrations", CHAINS, ids=lambda p: p.parts[-4])
def test_the_chain_has_one_head_and_unique_revisions(migrations: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1, f"{migrations}: heads {script.get_heads()}"
    ids = [
        re.search(r'^revision = "([^"]+)"', p.read_text(), re.M).group(1)  # type: ignore[union-attr]
        for p in (migrations / "versions").glob("*.py")
    ]
    assert len(ids) == len(set(ids)), f"{migrations}: a revision id is used twice: {sorted(ids)}"
    # walking down from the head reaches every revision (nothing dangles off the chain)
    assert len(list(script.walk_revisions())) == len(ids)
