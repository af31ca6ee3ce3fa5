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


# --- reading and rewriting a real file (for mutation tests) ---------------------------------

_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def _skip_value(buf, pos, ty):
    if ty in _FIXED:
        return pos + struct.calcsize(_FIXED[ty])
    if ty == T_STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + n
    if ty == T_ARRAY:
        et, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if et in _FIXED:
            return pos + n * struct.calcsize(_FIXED[et])
        for _ in range(n):
            pos = _skip_value(buf, pos, et)
        return pos
    raise ValueError(f"type {ty}")


class Gguf:
    """A GGUF file split into editable parts: kvs as (key, type, raw value bytes), tensor infos
    as [name, ne (innermost first), type, offset], and the data section."""

    def __init__(self, path):
        buf = open(path, "rb").read()
        assert buf[:4] == b"GGUF"
        self.version, n_t, n_kv = struct.unpack_from("<IQQ", buf, 4)
        pos = 24
        self.kvs = []
        for _ in range(n_kv):
            (n,) = struct.unpack_from("<Q", buf, pos)
            key = buf[pos + 8 : pos + 8 + n].decode()
            pos += 8 + n
            (ty,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            end = _skip_value(buf, pos, ty)
            self.kvs.append((key, ty, buf[pos:end]))
            pos = end
        self.tensors = []
        for _ in range(n_t):
            (n,) = struct.unpack_from("<Q", buf, pos)
            name = buf[pos + 8 : pos + 8 + n].decode()
            pos += 8 + n
            (nd,) = struct.unpack_from("<I", buf, pos)
            ne = list(struct.unpack_from(f"<{nd}Q", buf, pos + 4))
            pos += 4 + 8 * nd
            ty, off = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            self.tensors.append([name, ne, ty, off])
        self.alignment = 32
        for k, ty, raw in self.kvs:
            if k == "general.alignment":
                self.alignment = struct.unpack("<I", raw)[0]
        start = (pos + self.alignment - 1) // self.alignment * self.alignment
        self.data = buf[start:]

    def set(self, key, value, ty=None):
        """Replace (or add) a kv; value is packed by the type of the old entry unless ty given."""
        old = [i for i, kv in enumerate(self.kvs) if kv[0] == key]
        if ty is None:
            ty = self.kvs[old[0]][1] if old else T_U32
        raw = value if isinstance(value, bytes) else struct.pack(_FIXED[ty], value)
        if old:
            self.kvs[old[0]] = (key, ty, raw)
        else:
            self.kvs.append((key, ty, raw))

    def get_u(self, key):
        for k, ty, raw in self.kvs:
            if k == key:
                return struct.unpack(_FIXED[ty], raw)[0]
        raise KeyError(key)

    def write(self, path, data=None):
        head = b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))
        for k, ty, raw in self.kvs:
            head += _str(k) + struct.pack("<I", ty) + raw
        for name, ne, ty, off in self.tensors:
            head += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
            head += struct.pack("<IQ", ty, off)
        head += b"\0" * ((-len(head)) % self.alignment)
        with open(path, "wb") as f:
            f.write(head)
            f.write(self.data if data is None else data)
