"""Request rates per token / client address: the pure token bucket with a hand-stepped clock, and the 429
problem answer of the real app (TestClient over a toy hub)."""

from __future__ import annotations

import pytest

from vlmhub.errors import ConfigError
from vlmhub.service.ratelimit import RateLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_gives_the_burst_then_paces_at_the_rate():
    clock = Clock()
    lim = RateLimiter(per_minute=60, burst=3, clock=clock)  # one request a second after a burst of three
    assert [lim.hit("a").allowed for _ in range(4)] == [True, True, True, False]
    refused = lim.hit("a")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1.0)
    clock.t += 0.5
    assert lim.hit("a").retry_after_s == pytest.approx(0.5)  # a refused request does not cost a token
    clock.t += 0.5
    assert lim.hit("a").allowed and not lim.hit("a").allowed
    clock.t += 3600  # a long pause refills to the burst, never beyond it
    assert [lim.hit("a").allowed for _ in range(4)] == [True, True, True, False]


def test_clients_have_their_own_buckets_and_old_ones_are_forgotten():
    clock = Clock()
    lim = RateLimiter(per_minute=1, burst=1, clock=clock, max_clients=2)
    assert lim.hit("a").allowed and not lim.hit("a").allowed
    assert lim.hit("b").allowed  # a's use costs b nothing
    assert lim.hit("c").allowed and len(lim) == 2  # a, least recently seen, is forgotten
    assert lim.hit("a").allowed


def test_zero_per_minute_turns_the_limit_off_and_bad_values_are_refused():
    lim = RateLimiter(per_minute=0, burst=1)
    assert not lim.enabled and all(lim.hit("a").allowed for _ in range(1000)) and len(lim) == 0
    for kwargs in ({"per_minute": -1, "burst": 1}, {"per_minute": 10, "burst": 0}, {"per_minute": 1.5, "burst": 1},
                   {"per_minute": True, "burst": 1}):
        with pytest.raises(ConfigError, match="VLMHUB_RATE_LIMIT"):
            RateLimiter(**kwargs)


def test_the_key_is_a_hash_of_the_token_else_the_address():
    token = "vh_secret-token-value"
    key, who = client_key({"headers": [(b"authorization", f"Bearer {token}".encode())], "client": ("10.0.0.1", 5)})
    assert key.startswith("token:") and token not in key and who == "this token"
    same, _ = client_key({"headers": [(b"authorization", f"bearer {token}".encode())], "client": ("10.0.0.9", 7)})
    assert same == key  # the same token from another address shares its budget
    assert client_key({"headers": [], "client": ("10.0.0.1", 5)})[0] == "addr:10.0.0.1"
    assert client_key({"headers": [(b"authorization", b"Basic abc")], "client": ("10.0.0.2", 5)})[0] == "addr:10.0.0.2"


def test_settings_read_the_rate_from_the_environment(monkeypatch, tmp_path):
    from vlmhub.settings import Settings

    monkeypatch.setenv("VLMHUB_RATE_LIMIT", "0")
    monkeypatch.setenv("VLMHUB_RATE_BURST", "7")
    s = Settings(home=tmp_path / "hub")
    assert (s.rate_limit, s.rate_burst) == (0, 7)
    monkeypatch.setenv("VLMHUB_RATE_LIMIT", "many")
    with pytest.raises(ConfigError, match="VLMHUB_RATE_LIMIT"):
        Settings(home=tmp_path / "hub")
    monkeypatch.delenv("VLMHUB_RATE_LIMIT")
    with pytest.raises(ConfigError, match="rate_burst"):
        Settings(home=tmp_path / "hub", rate_burst=0)


def test_the_app_answers_429_with_a_problem_body_and_retry_after(toy_hub):
    pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
    from fastapi.testclient import TestClient

    from vlmhub.service import ServiceLimits, VlmhubService
    from vlmhub.service.app import create_app

    limits = ServiceLimits.from_settings(toy_hub.settings, rate_per_minute=1, rate_burst=2)  # no refill within the test
    with TestClient(create_app(VlmhubService(toy_hub, embedder="hashing256", limits=limits)),
                    raise_server_exceptions=False) as client:
        assert [client.get("/v1/models").status_code for _ in range(2)] == [200, 200]
        listing = {p: p.stat().st_mtime_ns for p in toy_hub.settings.home.rglob("*") if p.is_file()}
        r = client.get("/v1/models")
        assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["type"] == "rate-limited" and body["status"] == 429 and "VLMHUB_RATE_LIMIT" in body["detail"]
        assert int(r.headers["retry-after"]) == body["retry_after"] >= 1
        # refused before the body is read or any route runs: a selection past the limit writes nothing
        r = client.post("/v1/select", json={"task": {"name": "t", "classes": ["red", "blue"]}, "k": 1})
        assert r.status_code == 429
        assert {p: p.stat().st_mtime_ns for p in toy_hub.settings.home.rglob("*") if p.is_file()} == listing
        assert client.get("/v1/health").status_code == 200  # monitors are never limited
        # a token has its own budget, whatever it is worth (a bad one is then a 401, not a 429)
        auth = {"Authorization": "Bearer not-a-real-token"}
        assert client.get("/v1/whoami", headers=auth).status_code == 401
        assert client.get("/v1/whoami", headers=auth).status_code == 401
        assert client.get("/v1/whoami", headers=auth).status_code == 429


def test_the_schema_documents_429(toy_hub):
    pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
    from fastapi.testclient import TestClient

    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app

    with TestClient(create_app(VlmhubService(toy_hub, embedder="hashing256"))) as client:
        schema = client.get("/openapi.json").json()
    assert "429" in schema["paths"]["/v1/select"]["post"]["responses"]
