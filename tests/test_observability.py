"""What an operator sees: request ids, JSON log lines that carry them, and /metrics after real
traffic, read by prometheus-client's parser and scraped by a real Prometheus server."""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import servers
from .http import HttpClient

CREDENTIALS = {"username": "buyer", "password": "password123"}


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text page."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(page: dict, name: str, **labels) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize(
    "given, kept",
    [("trace-me-123", True), ("x" * 128, True), ("x" * 129, False), ("bad\x01id", False), ("", False)],
)
def test_every_answer_carries_a_request_id_the_clients_when_printable(client, given, kept):
    for path in ("/health", "/nope", "/me", "/products?limit=0"):
        answer = client.get(path, headers={"X-Request-ID": given} if given else {})
        request_id = answer.headers["X-Request-ID"]
        assert (request_id == given) is kept and 1 <= len(request_id) <= 128, (path, request_id)


def test_metrics_are_for_loopback_and_the_metrics_token_only(make_app):
    closed = make_app().test_client()
    assert closed.get("/metrics").status_code == 200
    assert closed.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 404
    guarded = make_app(METRICS_TOKEN="m" * 40).test_client()
    outside = {"REMOTE_ADDR": "192.0.2.1"}
    refused = guarded.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 403 and refused.json["error"]
    allowed = guarded.get("/metrics", environ_base=outside, headers={"Authorization": f"Bearer {'m' * 40}"})
    assert allowed.status_code == 200 and allowed.mimetype == "text/plain"
    assert make_app(METRICS_ENABLED="0").test_client().get("/metrics").status_code == 404


@pytest.fixture
def served(live_app, postgres_url, own_redis, tmp_path):
    """gunicorn in production (JSON logs, four workers), its access log in a file, and a shop."""
    server = servers.Gunicorn(postgres_url, own_redis.url)
    server.env["ACCESS_LOG"] = str(tmp_path / "access.log")
    server.start()
    admin = HttpClient(server.port, server.admin_headers)
    branch_id = admin.request("POST", "/register_tenants", {"tenant_names": ["acme"]})[1]["tenants"][0][
        "branches"
    ][0]["id"]
    assert admin.request("POST", "/register_user", {**CREDENTIALS, "branch_id": branch_id})[0] == 201
    product = {"name": "Tea", "price": 1, "stock": 100, "branch_id": branch_id}
    server.product_id = admin.request("POST", "/products", product)[1]["id"]
    server.access_log = tmp_path / "access.log"
    yield server
    server.stop()


@pytest.mark.postgres
@pytest.mark.redis
def test_per_route_counts_after_real_traffic_match_the_requests_sent(served):
    scrape = HttpClient(served.port)
    before = samples(scrape.request_text("GET", "/metrics"))
    buyer = HttpClient(served.port)
    assert buyer.request("POST", "/login", CREDENTIALS)[0] == 200
    sent = {("/health", "GET", "200"): 7, ("/products", "GET", "200"): 5, ("unmatched", "GET", "404"): 2}
    sent[("/purchase", "POST", "201")] = 3
    sent[("/purchase", "POST", "409")] = 1
    for _ in range(7):
        buyer.request("GET", "/health")
    for _ in range(5):
        buyer.request("GET", "/products")
    for _ in range(2):
        buyer.request("GET", "/nope")
    for n in range(3):
        buyer.request(
            "POST",
            "/purchase",
            {"product_id": served.product_id, "quantity": 1},
            {"Idempotency-Key": f"k{n}"},
        )
    buyer.request("POST", "/purchase", {"product_id": served.product_id, "quantity": 1000})
    after = samples(scrape.request_text("GET", "/metrics"))
    for (route, method, status), count in sent.items():
        labels = {"route": route, "method": method, "status": status}
        assert (
            value(after, "store_requests_total", **labels) - value(before, "store_requests_total", **labels)
            == count
        )
    observed = value(after, "store_request_duration_seconds_count", route="/products", method="GET")
    assert (
        observed - value(before, "store_request_duration_seconds_count", route="/products", method="GET") == 5
    )
    assert value(after, "store_sales_total", outcome="sold", replayed="false") == 3
    assert value(after, "store_sales_total", outcome="out_of_stock", replayed="false") == 1


@pytest.mark.postgres
@pytest.mark.redis
def test_a_requests_id_is_in_its_answer_its_access_line_and_its_log_lines(served, own_redis):
    buyer = HttpClient(served.port)
    assert buyer.request("POST", "/login", CREDENTIALS)[0] == 200
    own_redis.stop()
    status, body, response = buyer.request("GET", "/me", headers={"X-Request-ID": "trace-me-123"})
    assert status == 503 and response.getheader("X-Request-ID") == "trace-me-123"
    time.sleep(0.3)  # the workers' lines reach their files
    app_lines = [json.loads(line) for line in served.output().splitlines() if line.startswith("{")]
    mine = [line for line in app_lines if line.get("request_id") == "trace-me-123"]
    assert mine and all({"time", "level", "logger", "message"} <= set(line) for line in mine)
    assert any("dependency unavailable: redis" in line["message"] for line in mine)
    access = [json.loads(line) for line in served.access_log.read_text().splitlines()]
    [line] = [line for line in access if line["request_id"] == "trace-me-123"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/me", 503)
    assert line["duration_ms"] >= 0 and line["level"] == "INFO"
    outages = samples(HttpClient(served.port).request_text("GET", "/metrics"))
    assert value(outages, "store_outages_total", dependency="redis") >= 1
    assert value(outages, "store_redis_breaker_open") == 1


@pytest.mark.postgres
@pytest.mark.redis
def test_a_real_prometheus_scrapes_the_counts(served, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is needed for this test: apt-get install prometheus (make test does)"
    port = servers.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: store\n    static_configs: [{{targets: ['127.0.0.1:{served.port}']}}]\n"
    )
    for _ in range(4):
        HttpClient(served.port).request("GET", "/health")
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        query = 'sum(store_requests_total{route="/health",method="GET",status="200"})'
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    result = json.loads(answer.read())["data"]["result"]
                if result and float(result[0]["value"][1]) >= 4:
                    break
            except urllib.error.HTTPError as starting:
                # Prometheus answers 503 until it is ready; the answer holds its connection.
                starting.close()
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped the counts"
            time.sleep(0.5)
        up = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": "up"})
        with urllib.request.urlopen(up, timeout=2) as answer:
            assert json.loads(answer.read())["data"]["result"][0]["value"][1] == "1"
    finally:
        prometheus.terminate()
        prometheus.wait(10)
