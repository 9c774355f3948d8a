"""Abuse limits on the Open311 endpoints: 429 with Retry-After per client address
and per api_key, 413 beyond the body cap, and nothing stored from a refusal."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from connectors.open311.ratelimit import MAX_BODY_BYTES, TokenBuckets
from connectors.open311.settings import RateLimit
from connectors.open311.testing import add_api_key, write_spec_city
from core.db.models import SignalRecord, Ticket

API = "/open311/v2"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LIMITS = """
read_per_address = { per_minute = 60, burst = 3 }
write_per_address = { per_minute = 6, burst = 2 }
write_per_api_key = { per_minute = 60, burst = 3 }
"""


@pytest.fixture
def vigie_config_dir(tmp_path, request):
    return write_spec_city(tmp_path / "config", getattr(request, "param", LIMITS))


@pytest.fixture
def key(vigie_api) -> str:
    return add_api_key(vigie_api.runtime, "xyz", ("city",))


@pytest.fixture
def stored(vigie_api):
    def count() -> tuple[int, int]:
        with vigie_api.runtime.sessions() as session:
            return (
                session.scalar(select(func.count()).select_from(Ticket)),
                session.scalar(select(func.count()).select_from(SignalRecord)),
            )

    return count


def body(key: str, **extra: str) -> str:
    fields = {
        "api_key": key,
        "service_code": "006",
        "address_string": "8TH AVE and JUDAH ST",
        "description": "Sidewalk cracked",
        **extra,
    }
    return urlencode(fields)


def from_address(vigie_app, host: str) -> TestClient:
    return TestClient(vigie_app, client=(host, 40000))


# --- The bucket itself ---------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_refills_at_its_rate():
    now = [1000.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    rule = RateLimit(per_minute=30, burst=2)  # a token every 2 s
    assert [buckets.take("a", rule) for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a", rule) == pytest.approx(2.0)
    assert buckets.take("b", rule) == 0.0  # another key, another bucket
    now[0] += 1.0
    assert buckets.take("a", rule) == pytest.approx(1.0)
    now[0] += 1.0
    assert buckets.take("a", rule) == 0.0
    now[0] += 60.0
    assert [buckets.take("a", rule) for _ in range(3)][:2] == [0.0, 0.0]  # never above burst


def test_full_buckets_are_forgotten_when_there_are_too_many():
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0], max_keys=10)
    rule = RateLimit(per_minute=60, burst=1)
    for n in range(10):
        buckets.take(n, rule)
    now[0] += 5.0
    buckets.take("new", rule)
    assert len(buckets._buckets) == 1


# --- 429 ---------------------------------------------------------------------------------


def test_posts_beyond_the_address_limit_get_429_and_store_nothing(vigie_api, key, stored):
    client = vigie_api.client
    answers = [
        client.post(f"{API}/requests.json", content=body(key), headers=FORM) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [201, 201, 429]
    refused = answers[2]
    assert refused.json() == [
        {"code": 429, "description": "too many requests from this address; try again in 10 s"}
    ]
    assert refused.headers["Retry-After"] == "10"
    assert stored() == (2, 2)
    xml = client.post(f"{API}/requests.xml", content=body(key), headers=FORM)
    assert xml.status_code == 429 and b"<code>429</code>" in xml.content


def test_an_api_key_is_limited_whatever_the_address(vigie_api, vigie_app, key, stored):
    statuses = []
    for n in range(4):
        with from_address(vigie_app, f"10.0.0.{n}") as client:
            statuses.append(
                client.post(f"{API}/requests.json", content=body(key), headers=FORM).status_code
            )
    assert statuses == [201, 201, 201, 429]
    assert stored() == (3, 3)
    other = add_api_key(vigie_api.runtime, "other-key", ("city",))
    with from_address(vigie_app, "10.0.1.1") as client:
        response = client.post(f"{API}/requests.json", content=body(other), headers=FORM)
    assert response.status_code == 201


def test_reads_have_their_own_limit_per_address(vigie_app, vigie_api):
    client = vigie_api.client
    statuses = [client.get(f"{API}/services.json").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get(f"{API}/requests.xml").status_code == 429
    with from_address(vigie_app, "192.0.2.7") as elsewhere:
        assert elsewhere.get(f"{API}/services.json").status_code == 200


@pytest.mark.parametrize(
    "vigie_config_dir",
    [LIMITS + 'exempt_addresses = ["testclient"]'],
    indirect=True,
)
def test_exempt_addresses_have_no_address_limit(vigie_api, key):
    client = vigie_api.client
    assert {client.get(f"{API}/services.json").status_code for _ in range(6)} == {200}
    statuses = [
        client.post(f"{API}/requests.json", content=body(key), headers=FORM).status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]  # the api_key's own limit still holds


# --- 413 ---------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_and_stores_nothing(vigie_api, key, stored):
    client = vigie_api.client
    big = body(key, description="x" * (MAX_BODY_BYTES + 1))
    response = client.post(f"{API}/requests.json", content=big, headers=FORM)
    assert response.status_code == 413
    assert response.json()[0]["code"] == 413

    def chunks():  # no Content-Length: counted while reading
        yield body(key).encode()
        for _ in range(MAX_BODY_BYTES // 1000 + 1):
            yield b"&x=" + b"y" * 1000

    streamed = client.post(f"{API}/requests.xml", content=chunks(), headers=FORM)
    assert streamed.status_code == 413 and b"<code>413</code>" in streamed.content
    assert stored() == (0, 0)
