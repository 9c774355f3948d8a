"""The influxdb telemetry plugin against a real server speaking the InfluxDB v2
write API: Debian's victoria-metrics, which shows what it stored at /api/v1/export."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import Commune
from core.signals import Reading
from plugins import influxdb

BINARY = "victoria-metrics"
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VictoriaMetrics:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which(BINARY) or BINARY,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.directory}",
                "-retentionPeriod=100y",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def export(self, name_regex: str) -> list[dict]:
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).read()
        query = urllib.parse.urlencode({"match[]": f'{{__name__=~"{name_regex}"}}'})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line]

    def samples(self, name_regex: str) -> int:
        return sum(len(series["values"]) for series in self.export(name_regex))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    if shutil.which(BINARY) is None:
        pytest.skip("victoria-metrics not installed (apt-get install victoria-metrics)")
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_writers() -> Iterator[None]:
    influxdb.close_writers()  # other tests' (the example communes write to :8428)
    yield
    influxdb.close_writers()


def commune_writing_to(url: str, **settings) -> Commune:
    return Commune(
        slug="testville",
        name="Testville",
        reference_prefix="TST",
        plugins={"influxdb": influxdb.Settings(url=url, flush_interval_ms=50, **settings)},
    )


def meter_readings(count: int, start: int = 0, device: str = "WM-1") -> list[Reading]:
    return [
        Reading(
            device_id=device,
            device_kind="water_meter",
            observed_at=T0 + timedelta(minutes=n),
            fields={"volume_m3": 100.0 + n, "battery_years": 11},
            commune="testville",
            tags={"network": "ttn-v3"},
        )
        for n in range(start, start + count)
    ]


def test_readings_become_one_measurement_per_kind_tagged_with_device_and_commune(
    victoria,
) -> None:
    commune = commune_writing_to(victoria.url, org="clermont", bucket="capteurs")
    lamp = Reading(
        device_id="SL-CLF-04412",
        device_kind="streetlight",
        observed_at=T0,
        fields={"power_w": 41.5, "energy_kwh": 1520.25, "power_state": "on"},
        commune="testville",
    )
    influxdb.store_telemetry(readings=[*meter_readings(3), lamp], commune=commune)
    writer = influxdb.writer_for(commune.plugin_config("influxdb"))
    assert writer.flush(10)

    volume = {
        tuple(sorted(s["metric"].items())): s for s in victoria.export("water_meter_volume_m3")
    }
    [(labels, series)] = volume.items()
    assert dict(labels) == {
        "__name__": "water_meter_volume_m3",
        "device_id": "WM-1",
        "commune": "testville",
        "network": "ttn-v3",
    }
    assert series["values"] == [100.0, 101.0, 102.0]
    assert series["timestamps"] == [
        int((T0 + timedelta(minutes=n)).timestamp() * 1000) for n in range(3)
    ]
    [power] = victoria.export("streetlight_power_w")
    assert power["metric"]["device_id"] == "SL-CLF-04412" and power["values"] == [41.5]
    assert victoria.samples("streetlight_energy_kwh") == 1
    assert writer.snapshot().written == 4 and writer.snapshot().dropped == 0


def test_a_server_away_never_holds_up_the_caller_and_gets_the_points_when_back(
    victoria,
) -> None:
    commune = commune_writing_to(victoria.url, batch_size=50, retry_interval_ms=50, max_retries=1)
    influxdb.store_telemetry(readings=meter_readings(10), commune=commune)
    writer = influxdb.writer_for(commune.plugin_config("influxdb"))
    assert writer.flush(10)

    victoria.stop()
    slowest = 0.0
    for batch in range(20):
        started = time.monotonic()
        influxdb.store_telemetry(
            readings=meter_readings(50, start=10 + batch * 50), commune=commune
        )
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.1, f"store_telemetry waited {slowest:.3f} s for an absent server"
    deadline = time.monotonic() + 15
    while writer.snapshot().failed_batches == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.snapshot().failed_batches >= 1
    assert not writer.flush(0.2)  # still buffered

    victoria.start()
    assert writer.flush(60), writer.snapshot()
    stats = writer.snapshot()
    assert (stats.written, stats.dropped) == (1010, 0)
    assert victoria.samples("water_meter_volume_m3") == 1010


def test_full_batches_go_at_once_and_a_partial_one_after_the_flush_interval(victoria) -> None:
    commune = commune_writing_to(victoria.url, batch_size=10)
    commune.plugins["influxdb"] = commune.plugin_config("influxdb").model_copy(
        update={"flush_interval_ms": 1500}
    )
    influxdb.store_telemetry(readings=meter_readings(25), commune=commune)
    writer = influxdb.writer_for(commune.plugin_config("influxdb"))
    deadline = time.monotonic() + 1.0
    while writer.snapshot().written < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = writer.snapshot()
    assert (stats.written, stats.buffered) == (20, 5)  # two full batches, not yet the rest
    time.sleep(2.0)
    assert writer.snapshot().written == 25  # the partial batch, once it had waited 1.5 s
    assert victoria.samples("water_meter_volume_m3") == 25


def test_beyond_the_bound_the_oldest_points_are_dropped_and_counted(victoria) -> None:
    victoria.stop()
    commune = commune_writing_to(
        victoria.url, batch_size=10, max_buffered_points=100, retry_interval_ms=50, max_retries=0
    )
    influxdb.store_telemetry(readings=meter_readings(250), commune=commune)
    writer = influxdb.writer_for(commune.plugin_config("influxdb"))
    time.sleep(0.5)
    stats = writer.snapshot()
    assert stats.dropped >= 130  # 250 - 100 buffered - 20 in flight at most
    assert stats.buffered + stats.in_flight <= 120

    victoria.start()
    assert writer.flush(60), writer.snapshot()
    stats = writer.snapshot()
    assert stats.written + stats.dropped == 250
    [series] = victoria.export("water_meter_volume_m3")
    assert len(series["values"]) == stats.written
    assert series["values"][-1] == 100.0 + 249  # the newest kept
    assert 100.0 not in series["values"]  # the oldest dropped


def test_the_token_may_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(influxdb.TOKEN_ENV, "from-env")
    assert influxdb.Settings().resolved_token() == "from-env"
    assert influxdb.Settings(token="in-file").resolved_token() == "in-file"
    assert "in-file" not in repr(influxdb.Settings(token="in-file"))


def test_clermont_ferrand_writes_its_readings_through_the_plugin(vigie_runtime) -> None:
    commune = vigie_runtime.area.commune("clermont-ferrand")
    assert commune.enables("influxdb")
    settings = commune.plugin_config("influxdb")
    assert settings.url == "http://127.0.0.1:8428"


def test_a_process_that_exits_without_closing_still_writes_its_buffered_points(
    victoria, tmp_path
) -> None:
    """`vigie ingest` stopping, or the ingest pipeline's child process ending:
    points buffered at exit are written before the client's thread pools stop."""
    script = tmp_path / "exits.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from plugins import influxdb\n"
        "from test_influxdb import meter_readings\n"
        # Exits at once: the points are still in the 1 s batching window.
        "from core.config import Commune\n"
        f"settings = influxdb.Settings(url={victoria.url!r}, flush_interval_ms=1000,"
        " batch_size=10_000)\n"
        "commune = Commune(slug='testville', name='Testville', reference_prefix='TST',"
        " plugins={'influxdb': settings})\n"
        "influxdb.store_telemetry(readings=meter_readings(500), commune=commune)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "not written" not in result.stderr, result.stderr
    assert victoria.samples("water_meter_volume_m3") == 500


def test_closing_with_the_server_away_gives_up_at_once(caplog) -> None:
    # Nothing listens on this port. Closing waited out the whole flush and
    # then the client's own retries (a `vigie demo` took 13 s to stop), then
    # the retries alone (11 s, two ingest processes). A server that refuses
    # connections is now known away when closing starts, with the default
    # retry settings.
    from core.testing import free_port

    commune = commune_writing_to(f"http://127.0.0.1:{free_port()}")
    influxdb.store_telemetry(readings=meter_readings(10), commune=commune)
    writer = influxdb.writer_for(commune.plugin_config("influxdb"))
    started = time.monotonic()
    writer.close(timeout=30)
    assert time.monotonic() - started < 3, "waited for the client's retries"
    assert "closing with 10 points not written" in caplog.text
