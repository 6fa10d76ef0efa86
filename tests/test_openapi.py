"""The OpenAPI document matches the routes served, and /docs works without a CDN."""

import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from openapi_spec_validator import validate

# Not operations of the API: its own document and pages, and Prometheus' text (app.metrics).
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/metrics"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
WITH_BODY = {
    ("/register_tenants", "post"),
    ("/register_user", "post"),
    ("/login", "post"),
    ("/purchase", "post"),
    ("/branches", "post"),
    ("/products", "post"),
    ("/products/{product_id}", "patch"),
    ("/users/{user_id}", "patch"),
    ("/me/password", "post"),
}
# Failures the contract names for each route.
FAILURES = {
    ("/register_tenants", "post"): {"403", "409", "422"},
    ("/register_user", "post"): {"403", "404", "409", "422"},
    ("/login", "post"): {"401", "422"},
    ("/products", "get"): {"401", "422"},
    ("/purchase", "post"): {"401", "404", "409", "422"},
    ("/me", "get"): {"401"},
    ("/branches", "post"): {"403", "404", "409", "422"},
    ("/products/{product_id}", "get"): {"401", "404"},
    ("/products", "post"): {"403", "422"},
    ("/products/{product_id}", "patch"): {"403", "404", "422"},
    ("/products/{product_id}", "delete"): {"403", "404"},
    ("/purchases", "get"): {"401", "422"},
    ("/stats/top-products", "get"): {"401", "422"},
    ("/health/ready", "get"): {"503"},
    ("/users", "get"): {"401", "403", "422"},
    ("/users/{user_id}", "patch"): {"401", "403", "404", "422"},
    ("/users/{user_id}", "delete"): {"401", "403", "404"},
    ("/me/password", "post"): {"401", "422"},
    ("/me/sessions", "get"): {"401"},
    ("/me/sessions/{handle}", "delete"): {"401", "404"},
    ("/logout/all", "post"): {"401"},
}


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def served(app):
    pairs = {}
    for rule in app.url_map.iter_rules():
        if rule.rule in DOC_ROUTES or rule.rule.startswith("/docs/assets/"):
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            pairs[(path, method.lower())] = app.view_functions[rule.endpoint]
    return pairs


def resolve(spec, ref: str):
    assert ref.startswith("#/"), ref
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_document_is_openapi_3_1(spec):
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]


def test_documented_operations_are_exactly_the_served_routes(app, spec):
    documented = {(path, method) for path, method, _ in operations(spec)}
    assert documented == set(served(app))


def test_operations_with_a_body_document_its_schema(spec):
    """app.parsing relies on APIFlask documenting the view it annotates: this fails if it stops."""
    with_body = set()
    for path, method, operation in operations(spec):
        if "requestBody" in operation:
            assert "schema" in operation["requestBody"]["content"]["application/json"], (path, method)
            with_body.add((path, method))
    assert with_body == WITH_BODY


@pytest.mark.parametrize(
    "path, method, parameters",
    [
        ("/products", "get", {("query", "limit"), ("query", "cursor")}),
        ("/purchases", "get", {("query", "limit"), ("query", "cursor")}),
        ("/stats/top-products", "get", {("query", "limit")}),
        ("/purchase", "post", {("header", "Idempotency-Key")}),
    ],
)
def test_parsed_query_strings_and_headers_are_documented(spec, path, method, parameters):
    documented = {(p["in"], p["name"]) for p in spec["paths"][path][method].get("parameters", [])}
    assert parameters <= documented


def test_every_operation_documents_a_2xx_response_schema(spec):
    for path, method, operation in operations(spec):
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert successes, (path, method)
        for code, response in successes.items():
            if code == "204":
                assert "content" not in response, (path, method)
            else:
                assert "schema" in response["content"]["application/json"], (path, method)


@pytest.mark.parametrize("operation", sorted(FAILURES), ids="{0[1]} {0[0]}".format)
def test_contract_failures_are_documented(spec, operation):
    path, method = operation
    documented = set(spec["paths"][path][method]["responses"])
    assert FAILURES[operation] <= documented
    for code in FAILURES[operation]:
        schema = spec["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
        assert "error" in resolve(spec, schema["$ref"])["properties"]


def test_every_ref_resolves(spec):
    found = list(refs(spec))
    assert found
    for ref in found:
        resolve(spec, ref)


def documented_keys(spec, path, method, code):
    schema = spec["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
    return set(resolve(spec, schema["$ref"])["properties"])


def test_real_responses_carry_the_documented_keys(spec, shop):
    customer, product_id = shop["customer"], shop["product"]["id"]
    answers = {
        ("/me", "get"): customer.get("/me"),
        ("/products", "get"): customer.get("/products"),
        ("/products/{product_id}", "get"): customer.get(f"/products/{product_id}"),
        ("/purchase", "post"): customer.post("/purchase", json={"product_id": product_id, "quantity": 1}),
        ("/purchases", "get"): customer.get("/purchases"),
        ("/stats/top-products", "get"): customer.get("/stats/top-products"),
    }
    for (path, method), response in answers.items():
        assert response.status_code < 300, (path, response.json)
        assert set(response.json) == documented_keys(spec, path, method, str(response.status_code))


class References(HTMLParser):
    """Collects the URLs of scripts, stylesheets, icons and images of a page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def page_references(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    parser = References()
    parser.feed(response.get_data(as_text=True))
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/docs/oauth2-redirect"])
def test_docs_pages_load_nothing_from_other_hosts(client, page):
    for url in page_references(client, page):
        assert not re.match(r"(?i)(https?:)?//", url), url


def test_docs_assets_are_served_by_the_app(client):
    urls = page_references(client, "/docs")
    local = [url for url in urls if not url.startswith("data:")]
    assert any(url.endswith(".js") for url in local) and any(url.endswith(".css") for url in local)
    for url in local:
        target = urlsplit(urljoin("http://localhost/docs", url))
        assert target.netloc == "localhost", url
        with client.get(target.path) as response:
            assert response.status_code == 200, url
            assert response.mimetype in ("text/css", "text/javascript", "application/javascript"), url


def test_each_schema_is_documented_once(spec):
    schemas = spec["components"]["schemas"]
    # APIFlask's name for a schema it registers twice: the first name and a number.
    copies = [name for name in schemas if name.rstrip("0123456789") in set(schemas) - {name}]
    assert copies == []
    one_product = spec["paths"]["/products/{product_id}"]["get"]["responses"]["200"]
    assert one_product["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ProductOut"}


def test_document_passes_the_openapi_validator(spec):
    validate(spec)
    text = json.dumps(spec)
    # OpenAPI 3.0's null, and a money rule standard validators get wrong for 19.99.
    assert '"nullable"' not in text and '"multipleOf"' not in text


def test_every_operation_says_who_may_call_it(app, spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie", "name": "session"}
    assert schemes["administrator"]["scheme"] == "bearer"
    anonymous = app.test_client()
    for path, method, operation in operations(spec):
        security = operation["security"]
        assert all(set(alternative) <= set(schemes) for alternative in security), (path, method)
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        answer = anonymous.open(concrete, method=method.upper(), json={})
        if security and {} not in security:
            assert answer.status_code in (401, 403), (path, method, answer.status_code)
        else:
            assert answer.status_code not in (401, 403), (path, method, answer.status_code)


def test_every_operation_documents_its_failures_with_their_bodies_and_retry_after(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert "500" in responses, (path, method)
        if (path, method) != ("/health", "get"):
            assert "503" in responses, (path, method)
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert "error" in resolve(spec, schema["$ref"])["properties"], (path, method, code)
            if code in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, method, code)
        if "422" in responses:
            assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ValidationError"
            )
    ready = spec["paths"]["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert set(resolve(spec, ready["$ref"])["required"]) == {"status", "error", "redis", "database"}


def test_every_field_of_an_answer_is_required(spec):
    for path, method, operation in operations(spec):
        for code, response in operation["responses"].items():
            if not code.startswith("2") or "content" not in response:
                continue
            names = set(refs(response["content"]))
            while names:
                schema = resolve(spec, names.pop())
                assert set(schema.get("required", [])) == set(schema["properties"]), (path, method, code)
                names |= set(refs(schema))
