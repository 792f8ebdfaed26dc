"""A dependency-free writer (and reader) of TensorBoard scalar event files.

An event file is a sequence of TFRecords; each record is

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

(little endian), and ``data`` is a serialized ``Event`` protocol buffer. Only
the fields needed for scalars are written::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The first record of a file is an ``Event`` whose ``file_version`` is
``"brain.Event:2"``; TensorBoard reads the rest as scalar summaries. Writing
the few bytes by hand keeps TensorFlow and protobuf out of the examples.
"""

import os
import socket
import struct
import time

import numpy as np

FILE_VERSION = "brain.Event:2"

# The Castagnoli polynomial, bit-reversed, as TFRecord uses it.
_CRC32C_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF


def _crc32c_table() -> np.ndarray:
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> 1) ^ np.uint32(_CRC32C_POLY), crc >> 1)
    return crc.astype(np.uint32)


_TABLE = [int(c) for c in _crc32c_table()]


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as an unsigned 32-bit int."""
    crc = _UINT32
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _UINT32


def masked_crc32c(data: bytes) -> int:
    """The rotated and offset CRC that TFRecord stores.

    Masking keeps a CRC stored inside data from being mistaken for the CRC of
    that data when records are nested.
    """
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _UINT32


def _varint(value: int) -> bytes:
    # Negative int64 values are encoded as their 64-bit two's complement.
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def encode_event(
    wall_time: float,
    step: int = 0,
    *,
    file_version: str | None = None,
    scalars: dict[str, float] | None = None,
) -> bytes:
    """Serializes one ``Event`` with a file version or scalar summaries."""
    out = _key(1, 1) + struct.pack("<d", wall_time)
    if step:
        out += _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _length_delimited(3, file_version.encode())
    if scalars:
        summary = b""
        for tag, value in scalars.items():
            value_msg = _length_delimited(1, tag.encode())
            value_msg += _key(2, 5) + struct.pack("<f", float(value))
            summary += _length_delimited(1, value_msg)
        out += _length_delimited(5, summary)
    return out


def frame_record(data: bytes) -> bytes:
    """Wraps ``data`` in TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


class SummaryWriter:
    """Appends scalar summaries to a new event file in ``logdir``.

    Parameters
    ----------
    logdir
        Directory of the run; created if missing. Each writer opens its own
        file, ``events.out.tfevents.<time>.<host>``, so a resumed run adds a
        file beside the old ones, as TensorBoard expects.
    """

    def __init__(self, logdir: str | os.PathLike):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "wb")
        self._write(encode_event(time.time(), file_version=FILE_VERSION))
        self.flush()

    def _write(self, data: bytes) -> None:
        self._file.write(frame_record(data))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Writes one event holding a scalar for each ``tag: value``."""
        self._write(encode_event(time.time(), int(step), scalars=values))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Reading back: enough of the wire format to check what `SummaryWriter` wrote.


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield field, value


def decode_event(data: bytes) -> dict:
    """Parses an ``Event`` written by `encode_event`.

    Returns a dict with ``wall_time``, ``step``, ``file_version`` (or None)
    and ``scalars`` (tag -> float).
    """
    event = {"wall_time": None, "step": 0, "file_version": None, "scalars": {}}
    for field, value in _fields(data):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            for _, value_msg in _fields(value):
                tag, simple_value = None, None
                for inner_field, inner in _fields(value_msg):
                    if inner_field == 1:
                        tag = inner.decode()
                    elif inner_field == 2:
                        simple_value = struct.unpack("<f", inner)[0]
                event["scalars"][tag] = simple_value
    return event


def read_records(path: str | os.PathLike) -> list[bytes]:
    """The data of every record in a TFRecord file, checking both CRCs.

    Raises
    ------
    ValueError
        On a truncated record or a CRC mismatch, naming the byte offset.
    """
    with open(path, "rb") as f:
        blob = f.read()
    records, pos = [], 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise ValueError(f"{path}: truncated record header at byte {pos}")
        header = blob[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[pos + 8 : pos + 12])
        if length_crc != masked_crc32c(header):
            raise ValueError(f"{path}: bad length CRC at byte {pos}")
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(blob):
            raise ValueError(f"{path}: truncated record at byte {pos}")
        data = blob[start:end]
        (data_crc,) = struct.unpack("<I", blob[end : end + 4])
        if data_crc != masked_crc32c(data):
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        records.append(data)
        pos = end + 4
    return records


def read_events(path: str | os.PathLike) -> list[dict]:
    """Every event of a file, as `decode_event` returns them."""
    return [decode_event(record) for record in read_records(path)]
