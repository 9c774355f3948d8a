"""Platform settings: environment variables prefixed ``VIGIE_`` and ``config/vigie.toml``.

Environment wins over the TOML file, which wins over the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEMO_DATABASE_URL = "sqlite:///var/vigie.db"


class ApiSettings(BaseModel):
    max_page_size: int = Field(default=200, ge=1, le=10_000)
    default_page_size: int = Field(default=50, ge=1)
    cors_origins: list[str] = []


class OutboxSettings(BaseModel):
    poll_seconds: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    """Everything the platform itself needs; communes are configured in ``config/communes``."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIE_", env_nested_delimiter="__", extra="forbid"
    )

    config_dir: Path = Path("config")
    database_url: str = DEMO_DATABASE_URL
    area_name: str | None = None
    demo: bool = False
    log_level: str = "INFO"
    data_dir: Path = Path("var")
    mqtt_url: str | None = None
    # Plugins installed but not to be loaded, by name.
    disabled_plugins: list[str] = []
    api: ApiSettings = ApiSettings()
    outbox: OutboxSettings = OutboxSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = getattr(init_settings, "init_kwargs", {}).get("config_dir")
        config_dir = Path(given or os.environ.get("VIGIE_CONFIG_DIR", "config"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_dir / "vigie.toml")
        return (init_settings, env_settings, toml, file_secret_settings)

    @model_validator(mode="after")
    def _no_open_cors_outside_demo(self) -> Settings:
        # Any web page could then drive the staff API with a stolen token.
        if "*" in self.api.cors_origins and not self.demo:
            raise ValueError(
                "api.cors_origins: '*' is allowed only with VIGIE_DEMO=1; list the staff app's origins"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
