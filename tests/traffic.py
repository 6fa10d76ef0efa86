"""Traffic for fault tests: buyers that log in, buy under idempotency keys until each purchase is
settled, and read the catalogue, recording every answer and how long it took."""

import threading
import time
import uuid

from .http import HttpClient


class Buyer(threading.Thread):
    """Buys one unit at a time, retrying each purchase under its own key until it is settled."""

    def __init__(self, port: int, product_id: int, stop: threading.Event, credentials: dict):
        super().__init__(daemon=True)
        self.client = HttpClient(port, timeout=5)
        self.product_id = product_id
        self.stop_event = stop
        self.answers: list[tuple[str, int, float]] = []
        self.bought: set[str] = set()
        self.pending: str | None = None
        self.logged_in = threading.Event()
        self.credentials = credentials

    def call(self, method, path, body=None, headers=None) -> int:
        started = time.monotonic()
        try:
            status = self.client.request(method, path, body, headers)[0]
        except OSError:
            status = -1  # no answer in time: a hang
        self.answers.append((f"{method} {path}", status, time.monotonic() - started, started))
        return status

    def settle(self, key: str) -> bool:
        """One attempt at the purchase under `key`; True once it has a final answer."""
        status = self.call("POST", "/purchase", {"product_id": self.product_id, "quantity": 1},
                           {"Idempotency-Key": key})  # fmt: skip
        if status == 401:
            self.call("POST", "/login", self.credentials)
        if status == 201:
            self.bought.add(key)
        if status in (201, 409):
            return True
        time.sleep(0.02)
        return False

    def run(self):
        # Logged in before the faults begin: four first logins hash at once, which on a slow
        # machine takes most of a second, and would otherwise meet the first fault mid-login.
        while not self.stop_event.is_set() and not self.logged_in.is_set():
            if self.call("POST", "/login", self.credentials) == 200:
                self.logged_in.set()
        while not self.stop_event.is_set():
            self.pending = self.pending or uuid.uuid4().hex
            if self.settle(self.pending):
                self.pending = None
            self.call("GET", "/products?limit=5")
            self.call("GET", "/health")

    def finish(self):
        """After the faults: settle the purchase that was in progress when traffic stopped."""
        deadline = time.monotonic() + 20
        while self.pending and time.monotonic() < deadline:
            if self.settle(self.pending):
                self.pending = None
        assert self.pending is None, self.answers[-5:]


def run(port, product_id, faults, credentials, buyers=4):
    stop = threading.Event()
    buyers = [Buyer(port, product_id, stop, credentials) for _ in range(buyers)]
    for buyer in buyers:
        buyer.start()
    try:
        for buyer in buyers:
            assert buyer.logged_in.wait(30), "a buyer could not log in"
        faults()
    finally:
        stop.set()
        for buyer in buyers:
            buyer.join(30)
    for buyer in buyers:
        buyer.finish()
    return buyers


def check(buyers, counts, allowed, slowest_503=1.0, health_always_up=True):
    """Every answer allowed, every 503 quick, /health up (served directly), and purchases = stock
    removed = keys settled. `counts` gives (purchases recorded, stock removed) from the database."""
    answers = [answer for buyer in buyers for answer in buyer.answers]
    bad = [a for a in answers if a[1] not in allowed]
    slow = [a for a in answers if a[1] == 503 and a[2] >= slowest_503]
    assert not bad, f"answers outside {allowed}: {bad[:10]}"
    assert not slow, f"503s slower than {slowest_503} s: {slow[:10]}"
    if health_always_up:
        assert all(a[1] == 200 for a in answers if a[0] == "GET /health")
    purchases, removed = counts()
    bought = set().union(*(buyer.bought for buyer in buyers))
    assert purchases == removed == len(bought) > 0
    return answers
