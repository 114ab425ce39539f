"""Framing and the reader thread, in-process (no torch)."""

import io
import json
import os
import struct
import threading

import pytest

from easel_runner.protocol import (
    MAX_FRAME_BYTES, Connection, ProtocolError, decode_payload, encode_frame, read_frame)

TIMEOUT = 10


def frames(*messages):
    return io.BytesIO(b"".join(encode_frame(m) for m in messages))


def test_frame_is_big_endian_length_then_utf8_json():
    frame = encode_frame({"type": "pong", "id": "é"})
    payload = '{"type":"pong","id":"é"}'.encode("utf-8")
    assert frame == struct.pack(">I", len(payload)) + payload


def test_frames_round_trip_and_end_cleanly():
    stream = frames({"type": "ping", "id": "1"}, {"type": "shutdown"})
    assert read_frame(stream) == {"type": "ping", "id": "1"}
    assert read_frame(stream) == {"type": "shutdown"}
    assert read_frame(stream) is None


def test_reads_a_frame_delivered_in_pieces():
    data = encode_frame({"type": "ping", "id": "x" * 1000})

    class Trickle(io.RawIOBase):
        def __init__(self):
            self.rest = data

        def read(self, n):
            chunk, self.rest = self.rest[:min(n, 7)], self.rest[min(n, 7):]
            return chunk

    assert read_frame(Trickle())["id"] == "x" * 1000


@pytest.mark.parametrize("data", [
    b"\x00\x00",                                  # header cut short
    struct.pack(">I", 10) + b'{"type"',           # payload cut short
    struct.pack(">I", MAX_FRAME_BYTES + 1),       # too large (refused before reading it)
    struct.pack(">I", 2) + b"\xff\xfe",           # not UTF-8
    struct.pack(">I", 4) + b"nope",               # not JSON
    struct.pack(">I", 2) + b"[]",                 # not an object
    struct.pack(">I", 2) + b"{}",                 # no type
    struct.pack(">I", 11) + b'{"type": 1}',       # type not a string
])
def test_malformed_frames_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO(data))


def test_decode_payload_accepts_extra_fields():
    assert decode_payload(json.dumps({"type": "cancel", "id": "g", "x": [1]}).encode()) == {
        "type": "cancel", "id": "g", "x": [1]}


class Harness:
    """A Connection on real pipes, with the process exit replaced by a recorded status."""

    def __init__(self):
        in_read, self.in_write = os.pipe()
        self.out_read, out_write = os.pipe()
        self.exited = threading.Event()
        self.status = None
        self.connection = Connection(os.fdopen(in_read, "rb"), os.fdopen(out_write, "wb"),
                                     terminate=self._exit)
        self._replies = os.fdopen(self.out_read, "rb")
        self.connection.start_reader()

    def _exit(self, status):
        self.status = status
        self.exited.set()

    def send(self, message):
        os.write(self.in_write, encode_frame(message))

    def close_input(self):
        if self.in_write is not None:
            os.close(self.in_write)
            self.in_write = None

    def recv(self):
        result = []
        reader = threading.Thread(target=lambda: result.append(read_frame(self._replies)), daemon=True)
        reader.start()
        reader.join(TIMEOUT)
        assert result, "no reply"
        return result[0]


@pytest.fixture
def harness():
    harness = Harness()
    yield harness
    harness.close_input()


def test_ping_is_answered_by_the_reader(harness):
    harness.send({"type": "ping", "id": "p1"})
    assert harness.recv() == {"type": "pong", "id": "p1"}


def test_work_is_queued_and_a_second_request_is_busy(harness):
    harness.send({"type": "generate", "id": "g1"})
    harness.send({"type": "load", "id": "l1"})
    assert harness.recv() == {"type": "error", "id": "l1", "code": "busy",
                              "message": "load refused: generate g1 is running"}
    job = harness.connection.next_job()
    assert job.id == "g1"
    harness.connection.complete(job, {"type": "result", "id": "g1"})
    assert harness.recv() == {"type": "result", "id": "g1"}
    harness.send({"type": "load", "id": "l2"})
    assert harness.connection.next_job().id == "l2"


def test_cancel_flags_only_the_running_id(harness):
    harness.send({"type": "generate", "id": "g1"})
    job = harness.connection.next_job()
    harness.send({"type": "cancel", "id": "other"})
    harness.send({"type": "ping", "id": "sync"})
    assert harness.recv()["type"] == "pong"
    assert not job.cancelled.is_set()
    harness.send({"type": "cancel", "id": "g1"})
    assert job.cancelled.wait(TIMEOUT)


def test_shutdown_cancels_the_running_job_and_is_queued(harness):
    harness.send({"type": "generate", "id": "g1"})
    job = harness.connection.next_job()
    harness.send({"type": "shutdown"})
    assert job.cancelled.wait(TIMEOUT)
    assert harness.connection.next_job().message == {"type": "shutdown"}


def test_unknown_type_is_an_invalid_request(harness):
    harness.send({"type": "dance", "id": "d1"})
    reply = harness.recv()
    assert (reply["id"], reply["code"]) == ("d1", "invalid_request")


def test_end_of_input_exits_0(harness):
    harness.close_input()
    assert harness.exited.wait(TIMEOUT)
    assert harness.status == 0


def test_malformed_frame_sends_error_with_null_id_and_exits_3(harness):
    os.write(harness.in_write, struct.pack(">I", 3) + b"{x}")
    reply = harness.recv()
    assert (reply["type"], reply["id"], reply["code"]) == ("error", None, "invalid_request")
    assert harness.exited.wait(TIMEOUT)
    assert harness.status == 3
