"""`/openapi.json` is a valid OpenAPI document that lists every route the server has,
`/docs` renders it, and the web folder serves only its own files."""

import json
import re

import pytest
import requests

from easel_server import REPO, wait_until

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def docs_server(server):
    """The shared server: it logs its own check of its routes against the document."""
    return server


@pytest.fixture(scope="module")
def document(docs_server):
    response = requests.get(docs_server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def test_the_document_validates(document):
    openapi_spec_validator.validate(document)
    assert document == json.loads((REPO / "web" / "openapi.json").read_text())


def test_every_route_the_server_registers_is_documented(docs_server, document):
    # The server compares its router's routes with the document when it first serves it.
    def checked():
        text = docs_server.log_path.read_text()
        return text if "openapi.json documents every route" in text or "missing from the OpenAPI document" in text else None
    log = wait_until(checked, 10, "the server never checked its routes")
    missing = re.findall(r"routes missing from the OpenAPI document.*", log)
    assert not missing, missing
    [count] = re.findall(r"openapi.json documents every route \((\d+) routes\)", log)
    documented = sum(1 for item in document["paths"].values() for method in METHODS if method in item)
    assert int(count) == documented


def test_every_documented_route_exists(docs_server, document):
    """Each documented operation reaches a handler: no `not_found` for the route itself."""
    for path, item in document["paths"].items():
        url = docs_server.url + re.sub(r"\{[^}]+\}", "no-such-thing", path)
        for method in METHODS:
            # DELETE /v1/defaults would reset the shared server's defaults; the server's own
            # route check above covers it.
            if method not in item or (method, path) == ("delete", "/v1/defaults"):
                continue
            # A body that is not JSON reaches the handler without queueing anything.
            response = requests.request(method, url, data="{", timeout=30,
                                        headers={"Content-Type": "application/json", "Accept": "application/json"})
            body = response.json() if "json" in response.headers.get("content-type", "") else None
            error = body.get("error") if isinstance(body, dict) else None
            # The native and OpenAI errors: {"error": {"code"}}; A1111's and sd-server's:
            # {"error": "message", "code"}.
            code = error.get("code") if isinstance(error, dict) else (body or {}).get("code") if isinstance(body, dict) else None
            assert code not in ("not_found", "method_not_allowed"), f"{method.upper()} {path}: {response.status_code} {response.text[:200]}"
            # A 404 must be about the thing (job_not_found, model_not_found, …), not the route.
            assert response.status_code != 404 or (code or "").endswith("_not_found"), (method, path, code)


def test_docs_page_and_static_files(docs_server):
    docs = requests.get(docs_server.url + "/docs", timeout=10)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    page = requests.get(docs_server.url + "/", timeout=10)
    assert page.status_code == 200 and "<title>Easel</title>" in page.text
    for name, media_type in (("app.js", "text/javascript"), ("style.css", "text/css"), ("docs.js", "text/javascript")):
        response = requests.get(f"{docs_server.url}/static/{name}", timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type), name


@pytest.mark.parametrize("path", ["/static/../Package.swift", "/static/%2e%2e/Package.swift", "/static/..%2fPackage.swift",
                                  "/static/.hidden", "/static/", "/static/nothing.js", "/static/%2Fetc%2Fpasswd"])
def test_static_files_never_leave_the_web_folder(docs_server, path):
    response = requests.get(docs_server.url + path, timeout=10)
    assert response.status_code == 404, response.text[:200]
    assert "swift-tools-version" not in response.text and "root:" not in response.text
