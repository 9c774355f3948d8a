"""Rate limits: core's token buckets, and what a resident meets on the public web
form when one address sends too much: a 429 page in their language, with
Retry-After, and nothing stored; the SMS webhook's limit per address."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from connectors.webform.routes import LOOKUP_LIMIT, SUBMIT_LIMIT
from core.db.models import SignalRecord, Ticket
from core.ratelimit import RateLimit, TokenBuckets, retry_after

# --- The buckets --------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait():
    now = [1000.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    rule = RateLimit(per_minute=30, burst=3)  # a token every 2 s
    assert [buckets.take("a", rule) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", rule) == pytest.approx(2.0)
    assert buckets.take("b", rule) == 0.0  # another address has its own bucket
    now[0] += 2.0
    assert buckets.take("a", rule) == 0.0
    assert buckets.take("a", rule) > 0
    now[0] += 3600  # refilled up to the burst, never beyond
    assert [buckets.take("a", rule) for _ in range(4)][-1] > 0


def test_full_buckets_are_forgotten_when_there_are_too_many_keys():
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0], max_keys=10)
    rule = RateLimit(per_minute=60, burst=1)
    for address in range(10):
        buckets.take(address, rule)
    now[0] += 5  # every bucket is full again
    buckets.take("new", rule)
    assert len(buckets._buckets) == 1


def test_buckets_are_shared_safely_between_threads():
    buckets = TokenBuckets()
    rule = RateLimit(per_minute=0.001, burst=100)  # no refill during the test
    allowed = []

    def hammer() -> None:
        allowed.extend(1 for _ in range(50) if buckets.take("same", rule) == 0.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 100


def test_limits_are_checked_and_retry_after_is_whole_seconds():
    with pytest.raises(ValidationError):
        RateLimit(per_minute=0, burst=1)
    with pytest.raises(ValidationError):
        RateLimit(per_minute=10, burst=0)
    assert retry_after(0.01) == 1 and retry_after(2.2) == 3


def test_open311_uses_cores_buckets():
    from connectors.open311 import RateLimit as Open311RateLimit
    from connectors.open311.ratelimit import TokenBuckets as Open311Buckets

    assert Open311RateLimit is RateLimit and Open311Buckets is TokenBuckets


# --- On the public endpoints -------------------------------------------------------------


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    """The example area; Clermont-Ferrand's SMS webhook takes two calls per address."""
    config = tmp_path / "config"
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", config)
    clermont = config / "communes" / "clermont-ferrand.toml"
    text = clermont.read_text(encoding="utf-8")
    assert "[plugins.sms]\n" in text
    limited = "[plugins.sms]\nper_address = { per_minute = 1, burst = 2 }\n"
    clermont.write_text(text.replace("[plugins.sms]\n", limited), encoding="utf-8")
    return config


CLF = "clermont-ferrand"
LITTER = {
    "answers.nature": "detritus",
    "description": "Des papiers partout devant l'école",
    "latitude": "45.7772",
    "longitude": "3.0830",
}


def stored(vigie_api) -> tuple[int, int]:
    with vigie_api.runtime.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Ticket)),
            session.scalar(select(func.count()).select_from(SignalRecord)),
        )


def form_token(vigie_api) -> str:
    page = vigie_api.client.get("/", params={"commune": CLF, "category": "proprete"}).text
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def post_report(vigie_api, lang: str = "fr", **fields):
    data = {"commune": CLF, "category": "proprete", "lang": lang, **fields}
    return vigie_api.client.post(f"/reports?lang={lang}", data=data, follow_redirects=False)


def test_forms_beyond_the_address_limit_get_429_and_store_nothing(vigie_api):
    # Forms sent with a mistake count too: a flood need not be valid.
    for _ in range(SUBMIT_LIMIT.burst):
        assert post_report(vigie_api, description="x").status_code == 422
    before = stored(vigie_api)
    refused = post_report(vigie_api, token=form_token(vigie_api), **LITTER)
    assert refused.status_code == 429
    # A token every 3 s: less if the forms before took a while to send (a busy machine).
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert "Trop d&#39;envois" in refused.text
    assert "n&#39;a pas été enregistré" in refused.text
    assert stored(vigie_api) == before
    english = post_report(vigie_api, lang="en", **LITTER)
    assert english.status_code == 429 and "this one was not recorded" in english.text
    assert stored(vigie_api) == before


def test_tracking_pages_beyond_the_address_limit_get_429(vigie_api):
    statuses = [
        vigie_api.client.get(f"/track/CLF-2026-{n:06d}").status_code
        for n in range(LOOKUP_LIMIT.burst + 1)
    ]
    assert statuses == [404] * LOOKUP_LIMIT.burst + [429]
    refused = vigie_api.client.get("/receipt/CLF-2026-000001?lang=en")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "Too many requests" in refused.text
    # The form itself is not limited: a resident can still fill it in.
    assert vigie_api.client.get("/").status_code == 200


def test_the_sms_webhook_refuses_a_flood_from_one_address_before_reading_it(vigie_api):
    from connectors.sms_models import SmsInboundMessage

    runtime = vigie_api.runtime
    secret = runtime.commune(CLF).plugin_config("sms").inbound_secret.get_secret_value()

    def texted(number: int):
        body = {"from": f"+3361234567{number}", "text": "Tag au 12 rue Blatin",
                "message_id": f"m{number}"}  # fmt: skip
        return vigie_api.client.post(
            f"/sms/inbound/{CLF}", json=body, headers={"X-Vigie-Secret": secret}
        )

    assert [texted(n).status_code for n in range(2)] == [200, 200]
    with runtime.sessions() as session:
        before = session.scalar(select(func.count()).select_from(SmsInboundMessage))
    refused = texted(2)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json() == {"error": "too many requests from this address; try again in 60 s"}
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SmsInboundMessage)) == before
