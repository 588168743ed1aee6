#!/bin/sh
# Boot figures for each profile given (default: tinyipa): compressed kernel
# and initramfs sizes, and the smallest RAM (of 128, 192, 256, 384, 512 MiB)
# with which the ramdisk reaches the agent's start line on the serial
# console, with the time it took. Under TCG (KVM is not trusted here), one
# NIC, no Ironic: the agent only has to start.
#
#   builder/benches/boot.sh [PROFILE...]
#
# Environment: OUT (build outputs, default target/bench/boot), IPA_BUILD_CACHE
# (download cache, default target/test-cache), TIMEOUT (seconds per boot,
# default 120).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/target/bench/boot}
cache=${IPA_BUILD_CACHE:-$root/target/test-cache}
timeout=${TIMEOUT:-120}
marker='ipa-agent'
marker2='starting (root'
[ $# -gt 0 ] || set -- tinyipa

command -v qemu-system-x86_64 >/dev/null || {
    echo "qemu-system-x86_64 missing: sudo apt-get install -y qemu-system-x86 qemu-utils" >&2
    exit 2
}

# Boots $kernel + $initramfs (with DIR's cmdline) with MEM MiB; prints seconds to the marker,
# or "fail" when QEMU exits or the timeout passes first.
boot() {
    dir=$1 mem=$2
    log=$(mktemp)
    cmdline=$(sed -n 's/^ *"cmdline": *"\(.*\)",* *$/\1/p' "$dir/manifest.json" | head -n1)
    start=$(date +%s.%N)
    qemu-system-x86_64 -accel tcg -machine pc -m "$mem" -display none -no-reboot \
        -monitor none -serial "file:$log" \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "$cmdline" \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
        >/dev/null 2>&1 &
    pid=$!
    result=fail
    while kill -0 "$pid" 2>/dev/null; do
        if grep -F "$marker" "$log" 2>/dev/null | grep -qF "$marker2"; then
            result=$(echo "$(date +%s.%N) - $start" | bc)
            break
        fi
        if [ "$(echo "$(date +%s.%N) - $start > $timeout" | bc)" = 1 ]; then
            break
        fi
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    echo "$result"
}

printf '%-10s %12s %12s %10s %10s\n' profile kernel initramfs min-RAM to-agent
for profile in "$@"; do
    dir=$out/$profile
    (cd "$root" && cargo run -q --release -p ipa-build -- --profile "$profile" \
        --output "$dir" --cache "$cache" -q) >&2
    kernel=$(ls "$dir"/*.kernel | head -n1)
    initramfs=$(ls "$dir"/*.initramfs | head -n1)
    ksize=$(stat -c %s "$kernel")
    isize=$(stat -c %s "$initramfs")
    found=none took=-
    for mem in 128 192 256 384 512; do
        t=$(boot "$dir" "$mem")
        echo "  $profile with $mem MiB: $t" >&2
        if [ "$t" != fail ]; then
            found="$mem MiB" took=$(printf '%.1f s' "$t")
            break
        fi
    done
    printf '%-10s %12s %12s %10s %10s\n' "$profile" "$ksize" "$isize" "$found" "$took"
done
