"""Framing and the stdin reader of the runner protocol (docs/runner-protocol.md).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON: an
object with a string field `type`.
"""

import json
import os
import queue
import struct
import sys
import threading

MAX_FRAME_BYTES = 512 * 1024 * 1024
EXIT_MALFORMED = 3

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A malformed frame: fatal for the connection."""


def encode_frame(message):
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload):
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a string field 'type'")
    return message


def read_frame(stream):
    """The next message from a binary stream, or None at end of input between frames."""
    header = _read_exact(stream, _HEADER.size, eof_ok=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
    return decode_payload(_read_exact(stream, length, eof_ok=False))


def _read_exact(stream, size, eof_ok):
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if eof_ok and remaining == size:
                return None
            raise ProtocolError(f"input ended inside a frame ({size - remaining} of {size} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Job:
    """A load, generate or shutdown request handed to the main thread."""

    def __init__(self, message):
        self.message = message
        self.id = message.get("id")
        self.cancelled = threading.Event()


class Connection:
    """Writes frames under a lock; a reader thread answers pings and queues the work.

    Admission (busy) and cancel are decided on the reader thread, because the main
    thread is blocked inside the engine while a generation runs.
    """

    def __init__(self, inp, out, terminate=os._exit):
        self._in = inp
        self._out = out
        self._exit = terminate
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._active = None
        self._jobs = queue.Queue()

    @classmethod
    def from_stdio(cls):
        # Libraries print to fd 1 (tqdm, warnings, print): keep a private copy of the
        # pipe for frames and point fd 1 at stderr so nothing else reaches the server.
        protocol_fd = os.dup(1)
        os.dup2(2, 1)
        return cls(sys.stdin.buffer, os.fdopen(protocol_fd, "wb"))

    def send(self, message):
        self._write(encode_frame(message))

    def _write(self, frame):
        with self._write_lock:
            try:
                self._out.write(frame)
                self._out.flush()
            except OSError:
                # The server closed our output (broken pipe): nobody is left to serve.
                self._terminate(0)

    def start_reader(self):
        threading.Thread(target=self._read_loop, name="protocol-reader", daemon=True).start()

    def next_job(self):
        return self._jobs.get()

    def complete(self, job, reply):
        """Ends `job` and sends its reply; the next request is admitted from then on."""
        with self._state_lock:
            if self._active is job:
                self._active = None
        try:
            frame = encode_frame(reply)
        except ValueError as exc:  # a result over the frame limit
            frame = encode_frame({"type": "error", "id": job.id, "code": "engine_error", "message": str(exc)})
        self._write(frame)

    def _read_loop(self):
        try:
            while True:
                message = read_frame(self._in)
                if message is None:
                    self._terminate(0)
                    return
                if not self._dispatch(message):
                    return
        except ProtocolError as exc:
            self.send({"type": "error", "id": None, "code": "invalid_request", "message": str(exc)})
            self._terminate(EXIT_MALFORMED)

    def _dispatch(self, message):
        """Handles one incoming message; False once nothing more is to be read."""
        kind = message["type"]
        if kind == "ping":
            self.send({"type": "pong", "id": message.get("id")})
        elif kind == "cancel":
            with self._state_lock:
                active = self._active
                if active is not None and active.id is not None and active.id == message.get("id"):
                    active.cancelled.set()
        elif kind in ("load", "generate"):
            job = Job(message)
            with self._state_lock:
                busy = self._active
                if busy is None:
                    self._active = job
                    self._jobs.put(job)
            if busy is not None:
                self.send({"type": "error", "id": job.id, "code": "busy",
                           "message": f"{kind} refused: {busy.message['type']} {busy.id} is running"})
        elif kind == "shutdown":
            # A running generation would delay the exit for its whole length.
            with self._state_lock:
                if self._active is not None:
                    self._active.cancelled.set()
            self._jobs.put(Job(message))
            return False
        else:
            self.send({"type": "error", "id": message.get("id"), "code": "invalid_request",
                       "message": f"unknown message type {kind!r}"})
        return True

    def _terminate(self, status):
        sys.stderr.flush()
        self._exit(status)
