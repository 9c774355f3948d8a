"""Platform settings: environment variables prefixed ``VIGIE_`` and ``config/vigie.toml``.

Environment wins over the TOML file, which wins over the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

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
    # Reports arriving together are stored in one transaction (core.intake_queue).
    intake_batch_size: int = Field(default=64, ge=1, le=1000)
    # Public GET answers, and the request entries they show, served again while
    # no commit came (core.answer_cache), per process; 0 turns a cache off.
    answer_cache_megabytes: float = Field(default=32, ge=0)
    entry_cache_megabytes: float = Field(default=64, ge=0)
    answer_cache_seconds: float = Field(default=60, ge=0)
    # PostgreSQL: hear of other processes' commits by LISTEN/NOTIFY instead of
    # reading the data version at each public GET (core.db.data_version). Turn it
    # off behind a pooler that cannot keep a LISTEN (PgBouncer's transaction mode).
    answer_cache_listens: bool = True
    cors_origins: list[str] = []


class OutboxSettings(BaseModel):
    poll_seconds: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)


class IngestSettings(BaseModel):
    """Sensor ingestion: the MQTT subscriber of ``vigie serve`` / ``vigie ingest``.

    The broker is ``VIGIE_MQTT_URL`` (``mqtt://user:pass@host:1883`` or
    ``mqtts://...:8883``); without it ``vigie serve`` starts an embedded broker.
    """

    # Unset: ``vigie serve`` and ``vigie demo`` ingest, an app built otherwise
    # (tests, ``uvicorn --factory``) does not. False: API-only processes behind
    # a load balancer (run ``vigie ingest`` apart). True: ingest in any case.
    enabled: bool | None = None
    # Stable id: the broker keeps this client's session (and its unacked
    # messages) across restarts. Default ``vigie-ingest-<hostname>`` (``vigie-serve-``
    # for ``vigie serve``); give each process on one host its own (``--client-id``).
    client_id: str | None = Field(default=None, min_length=1, max_length=100)
    # "vigie": ``$share/vigie/<filter>``, so that several ``vigie ingest`` split
    # the load (MQTT 5 brokers: Mosquitto >= 1.6, EMQX, HiveMQ...). Empty by
    # default: Mosquitto 2.0.11 does not restore shared subscriptions when it
    # restarts, and drops what is published until the ingestors resubscribe.
    shared_group: str = Field(default="", pattern=r"^[^/+#]*$")
    # Topics when the communes name none (``mqtt_topics`` in their files).
    default_topics: list[str] = [
        "v3/+/devices/+/up",
        "application/+/device/+/event/up",
        "wmbus/#",
        "vigie/#",
    ]
    extra_topics: list[str] = []
    # The pipeline (decoding, connectors, tickets, the database) in a child
    # process of its own, the MQTT client in this one: two cores instead of
    # one. False: both in this process (tests, a one-core machine).
    pipeline_process: bool = True
    # How many such processes: each batch is split among them by topic, so a
    # device's messages always go to the same one (core.ingest.pipeline_pool).
    # 1: one process. More than the machine's cores gains nothing.
    pipeline_processes: int = Field(default=2, ge=1, le=32)
    # A batch is committed when it holds batch_size messages or is batch_ms old.
    # Split among the pipeline processes: each stores about
    # batch_size / pipeline_processes messages a transaction (fewer, and the
    # statements per batch cost more per message). Only a backlog fills a
    # batch: live traffic closes one every batch_ms.
    batch_size: int = Field(default=4000, ge=1, le=10_000)
    batch_ms: int = Field(default=50, ge=1, le=10_000)
    # Batches handed to the pipeline before the oldest is answered: the next
    # is on its way while one is being stored. 1: one at a time.
    batches_in_flight: int = Field(default=2, ge=1, le=16)
    # "auto": MQTT 5 when the broker speaks it, else 3.1.1 (no shared subscriptions).
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive: int = Field(default=60, ge=5)
    # How long the broker keeps the session (subscriptions, queued messages) while we are away.
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    # MQTT 5 Receive Maximum: unacknowledged messages the broker may send us at once.
    # At least batch_size * (batches_in_flight + 1), so that the next batch
    # fills while the others are being stored.
    receive_maximum: int = Field(default=12000, ge=1, le=65535)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    # CA bundle for mqtts:// when the broker's certificate is not from a public CA.
    tls_ca_file: Path | None = None
    # Embedded broker of ``vigie serve`` when VIGIE_MQTT_URL is unset.
    embedded_port: int = Field(default=1883, ge=1, le=65535)
    # How often ``vigie serve`` / ``vigie ingest`` look for silent meters.
    silent_check_minutes: float = Field(default=15.0, gt=0)
    # Simulated sensor messages published once ingestion runs (``vigie demo`` sets it).
    demo_burst: int = Field(default=0, ge=0)
    # The pipeline (core.ingest): a bigger payload goes to the dead letters unread.
    max_payload_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)
    # A storm: this many distinct devices raising the same condition on the same
    # asset (cabinet/circuit, supply point, parking site; else the device's
    # ``sector`` or ``zone`` tag) within the window become one incident ticket.
    storm_threshold: int = Field(default=10, ge=2)
    storm_window_seconds: float = Field(default=600, gt=0)
    # How long a process trusts its cached copy of the device registry: an
    # import through another process is seen after this long, in this one at once.
    device_cache_seconds: float = Field(default=60, ge=0)


class Settings(BaseSettings):
    """Everything the platform itself needs; communes are configured in ``config/communes``."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIE_", env_nested_delimiter="__", extra="forbid"
    )

    config_dir: Path = Path("config")
    database_url: str = DEMO_DATABASE_URL
    # Connections a process keeps open. A request's thread holds one at a time, and
    # FastAPI runs up to 40 at once: with fewer, every busy second opens and closes
    # connections (a PostgreSQL backend each, or SQLite's pragmas).
    database_pool_size: int = Field(default=32, ge=1, le=1000)
    area_name: str | None = None
    demo: bool = False
    log_level: str = "INFO"
    data_dir: Path = Path("var")
    mqtt_url: str | None = None
    # Plugins installed but not to be loaded, by name.
    disabled_plugins: list[str] = []
    api: ApiSettings = ApiSettings()
    outbox: OutboxSettings = OutboxSettings()
    ingest: IngestSettings = IngestSettings()

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
                "api.cors_origins: '*' is allowed only with VIGIE_DEMO=1; "
                "list the staff app's origins"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
