"""Organization rules: slugs."""

import re
import unicodedata

MAX_SLUG = 60


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return (slug or "org")[:MAX_SLUG].rstrip("-")
