"""Request dependencies every domain uses: the app's settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.core.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
