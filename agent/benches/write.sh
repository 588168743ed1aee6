#!/usr/bin/env bash
# Run from anywhere: bash agent/benches/write.sh   (root, for the IPA side: losetup)
#
# Writes raw and qcow2 images of two sizes (256 MiB and 1 GiB) served over
# loopback HTTP to a file standing in for a disk, with the agent's own writer
# (examples/write_image.rs, the code of the write_image step), and prints
# MB/s and peak RSS for each: RSS must not grow with the image size. Every
# write is checked byte for byte against the raw image.
#
# When target/e2e/venv-ipa holds ironic-python-agent 13 (benches/compare.py
# makes it) and losetup works, IPA's writer runs on the same images against
# a loop device, right after ours on the same device (benches/ipa_write.py
# says exactly which IPA code runs).
# Needs qemu-img (qemu-utils) and python3. Scratch files live in
# target/tmp/write-bench and are deleted at the end (about 3 GiB at peak).
set -euo pipefail
ws=$(cd "$(dirname "$0")/../.." && pwd)
work=${WRITE_BENCH_DIR:-$ws/target/tmp/write-bench}
export CARGO_INCREMENTAL=0
cargo build -q --release -p ipa-agent --example write_image --manifest-path "$ws/Cargo.toml"
bin=$ws/target/release/examples/write_image
rm -rf "$work" && mkdir -p "$work/www"
server=""
loopdev=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A disk image: a DOS partition table, then 1 MiB of pseudo-random data in
# every 4 MiB, zeros elsewhere (so qcow2 has holes, as real images do).
make_raw() {
    python3 - "$1" "$2" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
with open(path, "wb") as f:
    for block in range(mib // 4):
        data = bytearray(rnd.randbytes(1 << 20)) + bytes(3 << 20)
        if block == 0:
            data[446:462] = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (2048).to_bytes(4, "little")
            data[510:512] = b"\x55\xaa"
        f.write(data)
PY
}

for mib in 256 1024; do
    make_raw "$work/www/disk-$mib.raw" "$mib"
    qemu-img convert -q -f raw -O qcow2 "$work/www/disk-$mib.raw" "$work/www/disk-$mib.qcow2"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

printf '%-14s %-6s %-6s %s\n' writer format MiB result
for mib in 256 1024; do
    for fmt in raw qcow2; do
        image="disk-$mib.$fmt"
        sha=$(sha256sum "$work/www/$image" | cut -d' ' -f1)
        truncate -s $(( (mib + 64) << 20 )) "$work/target"
        out=$("$bin" "http://127.0.0.1:$port/$image" "$work/target" "$sha")
        cmp -n $(( mib << 20 )) "$work/target" "$work/www/disk-$mib.raw" >/dev/null || { echo "MISMATCH: $image" >&2; exit 1; }
        printf '%-14s %-6s %-6s %s\n' ipa-agent-file "$fmt" "$mib" "$out"
        rm -f "$work/target"
    done
done

venv=$ws/target/e2e/venv-ipa
if [ ! -x "$venv/bin/python" ]; then
    echo "ironic-python-agent: not run (no $venv; run benches/compare.py once to create it)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ironic-python-agent: not run (needs root for losetup)"
    exit 0
fi
# Both writers on the same loop device over a preallocated file, one after
# the other, each on a device just zeroed with dd (so both write over
# allocated, cached-out blocks).
for mib in 256 1024; do
    for fmt in raw qcow2; do
        image="disk-$mib.$fmt"
        sha=$(sha256sum "$work/www/$image" | cut -d' ' -f1)
        fallocate -l $(( (mib + 64) << 20 )) "$work/target"  # allocated, so neither writer pays for allocation
        loopdev=$(losetup --find --show "$work/target")
        dd if=/dev/zero of="$loopdev" bs=1M count=$(( mib + 64 )) conv=fsync status=none
        out=$("$bin" "http://127.0.0.1:$port/$image" "$loopdev" "$sha")
        cmp -n $(( mib << 20 )) "$loopdev" "$work/www/disk-$mib.raw" >/dev/null || { echo "MISMATCH (loop): $image" >&2; exit 1; }
        printf '%-14s %-6s %-6s %s\n' ipa-agent-loop "$fmt" "$mib" "$out"
        dd if=/dev/zero of="$loopdev" bs=1M count=$(( mib + 64 )) conv=fsync status=none
        out=$(cd "$work" && "$venv/bin/python" "$ws/agent/benches/ipa_write.py" "http://127.0.0.1:$port/$image" "$loopdev" "$sha" "$fmt" $(( mib << 20 )) 2>"$work/ipa.log") \
            || { tail -20 "$work/ipa.log" >&2; exit 1; }
        cmp -n $(( mib << 20 )) "$loopdev" "$work/www/disk-$mib.raw" >/dev/null || { echo "MISMATCH (IPA): $image" >&2; exit 1; }
        losetup -d "$loopdev"; loopdev=""
        printf '%-14s %-6s %-6s %s\n' ipa-13-loop "$fmt" "$mib" "$out"
        rm -f "$work/target"
    done
done
