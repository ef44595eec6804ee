"""Surgery methods by name. Add a method: write its module (a :class:`SurgeryMethod`) and list it here."""

from __future__ import annotations

from famlib.errors import near
from famlib.surgery.base import SurgeryMethod
from famlib.surgery.errors import SurgeryError
from famlib.surgery.interpolate import Interpolate
from famlib.surgery.revert import Revert
from famlib.surgery.soup import Soup

METHODS: dict[str, SurgeryMethod] = {m.name: m for m in (Revert(), Soup(), Interpolate())}


def get_method(name: str) -> SurgeryMethod:
    """The method registered as ``name``. Raises SurgeryError listing the known names."""
    try:
        return METHODS[name]
    except KeyError:
        hint = near(name, METHODS)
        raise SurgeryError(f"unknown surgery method {name!r}. {hint + ' ' if hint else ''}"
                           f"Known: {', '.join(METHODS)}") from None
