"""Configuration of the image-host uploader (``[recipes]``)."""

from __future__ import annotations

import attrs


@attrs.frozen
class RecipesConfig:
    """``[recipes]``: extra recipe directory and per-service credentials."""

    directory: str | None = None
