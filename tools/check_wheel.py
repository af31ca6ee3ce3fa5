"""Check a built wheel's tags: abi3 for CPython >= 3.9, and a manylinux platform no newer than
MAX_GLIBC, both as the file name and WHEEL metadata state them and as auditwheel reads the
symbols the binary really needs.

    python3 tools/check_wheel.py dist/candlewick-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl
"""

import re
import subprocess
import sys
import zipfile

MAX_GLIBC = (2, 28)


def fail(msg: str) -> None:
    print(f"check_wheel: {msg}", file=sys.stderr)
    sys.exit(1)


# PEP 600 names, and the legacy aliases of PEP 513/571/599
LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def glibc(tag: str):
    """The glibc version a manylinux platform tag stands for (None: not a manylinux tag)."""
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
    if m:
        return (int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_\w+", tag)
    return LEGACY[m.group(1)] if m else None


def main(path: str) -> None:
    name = path.rsplit("/", 1)[-1]
    m = re.fullmatch(r"candlewick-[^-]+-(cp\d+)-(abi3)-([a-z0-9_.]+)\.whl", name)
    if not m:
        fail(f"{name}: not an abi3 wheel name (candlewick-VERSION-cp3X-abi3-PLATFORM.whl)")
    if m.group(1) != "cp39":
        fail(f"{name}: built for {m.group(1)}, expected the abi3 floor cp39")
    platforms = m.group(3).split(".")
    with zipfile.ZipFile(path) as z:
        wheel = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        tags = [line.split(":", 1)[1].strip() for line in z.read(wheel).decode().splitlines() if line.startswith("Tag:")]
        native = [n for n in z.namelist() if n.endswith(".so")]
    if not tags or any(not t.startswith("cp39-abi3-") for t in tags):
        fail(f"{wheel}: tags {tags}, expected cp39-abi3-*")
    if native != ["candlewick/_native.abi3.so"]:
        fail(f"expected one extension module candlewick/_native.abi3.so, found {native}")
    for p in platforms:
        g = glibc(p)
        if g is None or g > MAX_GLIBC:
            fail(f"{name}: platform {p} is not manylinux {MAX_GLIBC[0]}.{MAX_GLIBC[1]} or older")
    out = subprocess.run([sys.executable, "-m", "auditwheel", "show", path], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"auditwheel show failed: {out.stderr.strip()}")
    text = " ".join(out.stdout.split())
    seen = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    if not seen:
        fail(f"auditwheel show gave no platform tag:\n{out.stdout}")
    g = glibc(seen.group(1))
    if g is None or g > MAX_GLIBC:
        fail(f"auditwheel: the binary needs {seen.group(1)}, newer than manylinux_{MAX_GLIBC[0]}_{MAX_GLIBC[1]}")
    print(f"check_wheel: {name}: tags {', '.join(tags)}; auditwheel: the binary is consistent with {seen.group(1)}; "
          "one abi3 module")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: check_wheel.py WHEEL")
    main(sys.argv[1])
