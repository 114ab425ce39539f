"""Easel's MCP server, with the official `mcp` Python SDK as the client: over stdio
against `easel mcp`, and over streamable HTTP against `/mcp`."""

import asyncio
import base64
import io
import json
from contextlib import asynccontextmanager

import pytest
import requests
from PIL import Image

from easel_server import EASEL, get_job, submit, wait_until

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import McpError  # noqa: E402

TOOLS = {"generate_image", "list_models", "get_job", "cancel_job"}


@pytest.fixture(scope="module")
def mcp_server(server):
    """The shared server: MCP needs nothing of its own."""
    return server


@asynccontextmanager
async def stdio_session(server):
    parameters = StdioServerParameters(command=str(EASEL), args=["mcp", "--url", server.url])
    async with stdio_client(parameters) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(server):
    async with streamable_http_client(server.url + "/mcp") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


SESSIONS = {"stdio": stdio_session, "http": http_session}


def run(transport, server, scenario):
    async def main():
        async with SESSIONS[transport](server) as session:
            return await scenario(session)
    return asyncio.run(asyncio.wait_for(main(), 300))


def text_json(result):
    return json.loads(next(item.text for item in result.content if item.type == "text"))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_tools_are_listed_with_descriptions_for_a_model(transport, mcp_server):
    async def scenario(session):
        return (await session.list_tools()).tools
    tools = {tool.name: tool for tool in run(transport, mcp_server, scenario)}
    assert set(tools) == TOOLS
    generate = tools["generate_image"]
    assert generate.inputSchema["required"] == ["prompt"]
    for name in ("prompt", "negative_prompt", "size", "steps", "seed", "model"):
        assert len(generate.inputSchema["properties"][name]["description"]) > 20, name
    assert tools["get_job"].inputSchema["required"] == ["job_id"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_generate_image_returns_a_png_of_the_asked_size(transport, mcp_server):
    async def scenario(session):
        result = await session.call_tool("generate_image", {
            "prompt": f"a lighthouse over {transport}", "negative_prompt": "fog", "size": "64x96", "steps": 2, "seed": 77,
            "model": "tiny"})
        job = await session.call_tool("get_job", {"job_id": text_json(result)["job_id"]})
        models = await session.call_tool("list_models", {})
        return result, job, models

    result, job, models = run(transport, mcp_server, scenario)
    assert not result.isError
    [image] = [item for item in result.content if item.type == "image"]
    assert image.mimeType == "image/png"
    png = Image.open(io.BytesIO(base64.b64decode(image.data)))
    assert png.format == "PNG" and png.size == (64, 96)
    summary = text_json(result)
    assert summary["state"] == "succeeded" and summary["seed"] == 77
    assert summary["url"].startswith(mcp_server.url + "/v1/images/")
    assert requests.get(summary["url"], timeout=10).content == base64.b64decode(image.data)
    assert summary["parameters"]["negative_prompt"] == "fog"

    assert text_json(job)["state"] == "succeeded" and any(item.type == "image" for item in job.content)
    listed = text_json(models)
    assert listed["default_model"] == "tiny" and "tiny" in [m["id"] for m in listed["models"]]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_bad_arguments_are_mcp_errors_and_the_server_keeps_serving(transport, mcp_server):
    bad_calls = [
        ("generate_image", {"prompt": "x", "size": "huge"}, "size"),
        ("generate_image", {"prompt": "x", "steps": "many"}, "steps"),
        ("generate_image", {"prompt": "x", "size": "100x100", "steps": 2}, "multiple of 8"),
        ("generate_image", {"prompt": "x", "steps": 100000}, "steps"),
        ("generate_image", {"prompt": "x", "model": "no-such-model", "steps": 1}, "no-such-model"),
        ("generate_image", {"prompt": "x", "colour": "red"}, "colour"),
        ("generate_image", {}, "prompt"),
        ("get_job", {"job_id": "job_nope"}, "job_nope"),
        ("cancel_job", {}, "job_id"),
        ("no_such_tool", {}, "no_such_tool"),
    ]

    async def scenario(session):
        messages = []
        for name, arguments, _ in bad_calls:
            try:
                result = await session.call_tool(name, arguments)
            except McpError as error:
                messages.append(error.error.message)
            else:
                messages.append(f"no error: {result}")
        still = await session.call_tool("list_models", {})
        return messages, still

    messages, still = run(transport, mcp_server, scenario)
    for (name, arguments, expected), message in zip(bad_calls, messages):
        assert expected in message, (name, arguments, message)
    assert not still.isError
    assert requests.get(mcp_server.url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_cancel_job_stops_a_running_job(transport, mcp_server):
    job = submit(mcp_server, prompt="a long one", width=128, height=128, steps=150)
    wait_until(lambda: get_job(mcp_server, job["id"])["step"] >= 1, 120, "the job never started")

    async def scenario(session):
        return await session.call_tool("cancel_job", {"job_id": job["id"]})

    result = run(transport, mcp_server, scenario)
    assert text_json(result)["state"] == "cancelled"
    assert get_job(mcp_server, job["id"])["state"] == "cancelled"


def test_a_job_that_outlasts_wait_seconds_comes_back_as_a_job_id(mcp_server):
    async def scenario(session):
        result = await session.call_tool("generate_image", {"prompt": "slow", "size": "128x128", "steps": 150, "wait_seconds": 1})
        summary = text_json(result)
        waited = text_json(await session.call_tool("get_job", {"job_id": summary["job_id"], "wait_seconds": 1}))
        await session.call_tool("cancel_job", {"job_id": summary["job_id"]})
        return result, summary, waited

    result, summary, waited = run("http", mcp_server, scenario)
    assert not result.isError and summary["state"] in ("queued", "running")
    assert "get_job" in summary["note"] and not any(item.type == "image" for item in result.content)
    assert waited["state"] in ("queued", "running") and waited["job_id"] == summary["job_id"]


def test_easel_mcp_reports_an_unreachable_server_as_a_tool_error(mcp_server):
    class Nowhere:
        url = "http://127.0.0.1:9"

    async def scenario(session):
        return await session.call_tool("list_models", {})

    result = run("stdio", Nowhere, scenario)
    assert result.isError and "cannot reach Easel" in result.content[0].text


def test_mcp_over_http_checks_origin_and_accept(mcp_server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    ok = requests.post(mcp_server.url + "/mcp", json=body, headers={"Accept": "application/json, text/event-stream"}, timeout=10)
    assert ok.status_code == 200 and {t["name"] for t in ok.json()["result"]["tools"]} == TOOLS
    foreign = requests.post(mcp_server.url + "/mcp", json=body, timeout=10,
                            headers={"Accept": "application/json", "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    no_json = requests.post(mcp_server.url + "/mcp", json=body, headers={"Accept": "text/html"}, timeout=10)
    assert no_json.status_code == 406
    assert requests.get(mcp_server.url + "/mcp", headers={"Accept": "text/event-stream"}, timeout=10).status_code == 405
