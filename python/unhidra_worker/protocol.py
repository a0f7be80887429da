"""Wire format shared with the Go supervisor (internal/mlbridge).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON. Requests are {"data": str, "request_id": str, "model_id"?: str};
responses are {"result": str, "request_id": str, "processing_time_ms"?: int,
"error"?: str}. A cancel frame {"request_id": str, "cancel": true} sent on
the connection of a request in flight stops that request; the worker then
sends no reply and closes the connection. Zero-length frames and frames above the limit are protocol
faults: the connection is closed, because after them the stream can no longer
be trusted to be in step.
"""

import asyncio
import json
import struct

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 10 * 1024 * 1024

# Control requests, recognised by their data when no model_id is given.
HEALTH_CHECK = "health_check"
LIST_MODELS = "list_models"


class FrameError(Exception):
    """The peer broke the framing rules; the connection must be closed."""


async def read_frame(reader: asyncio.StreamReader, max_bytes: int):
    """Return the next frame's body, or None on a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise FrameError("truncated frame header") from None
    (n,) = HEADER.unpack(header)
    if n == 0:
        raise FrameError("zero-length frame")
    if n > max_bytes:
        # Refuse before reading: the body is never buffered.
        raise FrameError(f"frame of {n} bytes exceeds the {max_bytes}-byte limit")
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise FrameError("truncated frame body") from None


def encode_frame(obj, max_bytes: int) -> bytes:
    """Encode obj as one frame; raises FrameError when it would be too large."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if not body or len(body) > max_bytes:
        raise FrameError(f"response of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    return HEADER.pack(len(body)) + body


def parse_request(body: bytes):
    """Decode a request frame.

    Returns (request_id, data, model_id). Raises FrameError when the frame is
    not a JSON object with a string request_id: without an id no reply can be
    correlated, so the connection is dropped. Raises ValueError (carrying the
    request id as e.args[1]) for a well-identified request with bad fields.
    """
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FrameError("frame is not UTF-8 JSON") from None
    if not isinstance(msg, dict):
        raise FrameError("frame is not a JSON object")
    rid = msg.get("request_id")
    if not isinstance(rid, str):
        raise FrameError("request_id missing or not a string")
    data = msg.get("data")
    if not isinstance(data, str):
        raise ValueError("data missing or not a string", rid)
    model_id = msg.get("model_id")
    if model_id is not None and not isinstance(model_id, str):
        raise ValueError("model_id is not a string", rid)
    return rid, data, model_id or ""


def is_cancel(body: bytes, rid) -> bool:
    """Report whether body is a cancel frame for request rid."""
    if rid is None or len(body) > 4096:
        return False
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(msg, dict) and msg.get("cancel") is True and msg.get("request_id") == rid
