"""The two ceilings the store is measured against, served by gunicorn exactly like the store.

- ``create_json_app()``: plain Flask, one route returning a small JSON body. Nothing a Flask
  app under these gunicorn settings does can be cheaper than this.
- ``create_session_app()``: plain Flask with a *default* Flask-Session Redis session
  (``SESSION_TYPE="redis"`` and no other session setting; only the Redis client is given, so
  that it points at the benchmark's own redis-server instead of localhost:6379). Its read
  route does ``session.get("user_id")`` and nothing else: the cheapest authenticated read an
  app with server-side sessions can serve.

Both read ``REDIS_URL`` from the environment (the session app only). ``POST /login`` on the
session app stores ``user_id`` so that the benchmark holds a logged-in cookie.
"""

import os

from flask import Flask, session


def create_json_app() -> Flask:
    app = Flask(__name__)

    @app.get("/json")
    def small_json():
        return {"status": "ok", "items": [1, 2, 3]}

    return app


def create_session_app() -> Flask:
    from flask_session import Session
    from redis import Redis

    app = Flask(__name__)
    app.config["SESSION_TYPE"] = "redis"
    app.config["SESSION_REDIS"] = Redis.from_url(os.environ["REDIS_URL"])
    Session(app)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/login")
    def login():
        session["user_id"] = 1
        return {"message": "Login successful", "user_id": 1}

    @app.get("/session")
    def read_session():
        return {"user_id": session.get("user_id")}

    return app
