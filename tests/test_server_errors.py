"""Bad input gets a 4xx JSON error that names the field and the fix."""

import pytest
import requests


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


@pytest.mark.parametrize("fields, field, hint", [
    ({"steps": -1}, "steps", "between 1 and 150"),
    ({"steps": 151}, "steps", "between 1 and 150"),
    ({"width": 100}, "width", "multiple of 8"),
    ({"height": 32}, "height", "between 64 and 2048"),
    ({"width": 2048, "height": 2048, "batch_size": 1, "cfg_scale": 40}, "cfg_scale", "between 0 and 30"),
    ({"sampler": "Eulr"}, "sampler", "Euler a"),
    ({"batch_size": 0}, "batch_size", "between 1 and 8"),
    ({"seed": -5}, "seed", "-1 (random)"),
    ({"output_format": "gif"}, "output_format", "png, jpeg or webp"),
    ({"steps": "ten"}, "steps", "integer"),
    ({"stpes": 10}, "stpes", "known fields"),
])
def test_invalid_fields_name_the_field(server, fields, field, hint):
    error = error_of(server.txt2img(prompt="x", **fields), 422)
    assert error["field"] == field and hint in error["message"]
    assert error["code"] in ("invalid_field", "unknown_field")


def test_unknown_model_lists_the_available_ones(server):
    error = error_of(server.txt2img(prompt="x", model="nope"), 404)
    assert error == {"code": "model_not_found", "field": "model",
                     "message": "no model 'nope' in the models folder; available: tiny, tiny-single "
                                "(GET /v1/models lists them)"}


def test_path_traversal_in_model_is_just_an_unknown_model(server):
    error = error_of(server.txt2img(prompt="x", model="../../etc/passwd"), 404)
    assert error["code"] == "model_not_found"


def test_malformed_json(server):
    response = requests.post(server.url + "/v1/txt2img", data=b"{not json", timeout=10,
                             headers={"Content-Type": "application/json"})
    assert error_of(response, 400)["code"] == "invalid_json"


def test_body_that_is_not_an_object(server):
    response = requests.post(server.url + "/v1/txt2img", json=["a cat"], timeout=10)
    assert error_of(response, 400)["code"] == "invalid_json"


def test_oversized_body(server):
    response = requests.post(server.url + "/v1/txt2img", data=b'{"prompt": "' + b"a" * (17 * 1024 * 1024) + b'"}',
                             timeout=60)
    error = error_of(response, 413)
    assert error["code"] == "body_too_large" and "--max-body-bytes" in error["message"]


def test_unknown_route(server):
    error = error_of(requests.get(server.url + "/v1/nothing-here", timeout=10), 404)
    assert error["code"] == "not_found"


def test_accept_image_with_a_batch_is_not_acceptable(server):
    response = requests.post(server.url + "/v1/txt2img", json={"prompt": "x", "batch_size": 2},
                             headers={"Accept": "image/png"}, timeout=10)
    assert error_of(response, 406)["field"] == "batch_size"
