"""A minimal GGUF writer for tests: builds small valid (or deliberately broken) files."""

import struct

T_U32, T_F32, T_STRING, T_ARRAY, T_U64 = 4, 6, 8, 9, 10


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v):
    if isinstance(v, str):
        return struct.pack("<I", T_STRING) + _str(v)
    if isinstance(v, float):
        return struct.pack("<If", T_F32, v)
    if isinstance(v, int):
        return struct.pack("<II", T_U32, v)
    if isinstance(v, list):
        if v and isinstance(v[0], str):
            return struct.pack("<IIQ", T_ARRAY, T_STRING, len(v)) + b"".join(_str(s) for s in v)
        return struct.pack("<IIQ", T_ARRAY, T_U32, len(v)) + b"".join(struct.pack("<I", x) for x in v)
    raise TypeError(v)


def write_gguf(path, metadata, tensors=(), alignment=32):
    """tensors: (name, shape_outermost_first, f32 values as bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        head += _str(k) + _value(v)
    offset = 0
    blobs = []
    for name, shape, data in tensors:
        ne = list(reversed(shape))
        head += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", 0, offset)  # type 0 = F32
        blobs.append((offset, data))
        offset += (len(data) + alignment - 1) // alignment * alignment
    pad = (-len(head)) % alignment
    body = bytearray(offset)
    for off, data in blobs:
        body[off : off + len(data)] = data
    with open(path, "wb") as f:
        f.write(head + b"\0" * pad + bytes(body))
