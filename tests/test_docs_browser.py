"""/docs renders in headless Chromium with every other host unreachable: nothing comes from a CDN."""

import shutil
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served_docs(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_docs_render_offline_in_chromium(served_docs, tmp_path):
    assert CHROMIUM, "Chromium is needed for this test: apt-get install chromium (make test does)"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path}",
            # Every host but this machine is unreachable, as for a user offline.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"{served_docs}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    # Swagger UI built the page from /openapi.json: its operations are in the DOM.
    assert 'class="swagger-ui' in dom
    for path in ("/register_tenants", "/login", "/purchase", "/stats/top-products"):
        assert f'data-path="{path}"' in dom, path
