"""Names that must be unique, compared as people read them: Straße is STRASSE, ｆｕｌｌ is full."""

import unicodedata


def name_key(name: str) -> str:
    """The form a name is unique under: Unicode's NFKC_Casefold (compatibility forms, then case)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
