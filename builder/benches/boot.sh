#!/bin/sh
# Boot figures for each profile given (default: tinyipa): compressed kernel
# and initramfs sizes; the smallest RAM (of 128, 192, 256, 384, 512 MiB)
# with which the ramdisk reaches the agent's start line on the serial
# console, with the time it took; and the boot split, as issue 12 defines
# it: the kernel's part (QEMU start to the kernel's `Run /init` on the
# console) and userspace's (from there to the agent's first heartbeat), with
# their ratio and the profile's target (tinyipa: userspace at most 1/4 of
# the kernel part; coreos: at most 3/4). Under TCG (KVM is not trusted
# here), no real Ironic: for the split, a stand-in on 127.0.0.1 answers the
# version document, lookup and heartbeats (bench-only; the real-Ironic
# figures come from tests/e2e/ramdisk_rescue.rs); the VM has a virtio NIC
# (the PXE one), an RTL8139 and a MegaRAID controller.
#
#   builder/benches/boot.sh [PROFILE...]
#
# Environment: OUT (build outputs, default target/bench/boot), IPA_BUILD_CACHE
# (download cache, default target/test-cache), TIMEOUT (seconds per boot,
# default 120), RUNS (split boots per profile, default 3; the median is shown),
# IPA_BUILD (an ipa-build binary to build with instead of `cargo run --release`).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/target/bench/boot}
cache=${IPA_BUILD_CACHE:-$root/target/test-cache}
timeout=${TIMEOUT:-120}
runs=${RUNS:-3}
marker='ipa-agent'
marker2='starting (root'
[ $# -gt 0 ] || set -- tinyipa

for tool in qemu-system-x86_64 python3 bc; do
    command -v "$tool" >/dev/null || {
        echo "$tool missing: sudo apt-get install -y qemu-system-x86 qemu-utils python3 bc" >&2
        exit 2
    }
done

now() { date +%s.%N; }

# Boots $kernel + $initramfs (with DIR's cmdline) with MEM MiB; prints seconds to the marker,
# or "fail" when QEMU exits or the timeout passes first.
boot() {
    dir=$1 mem=$2
    log=$(mktemp)
    cmdline=$(sed -n 's/^ *"cmdline": *"\(.*\)",* *$/\1/p' "$dir/manifest.json" | head -n1)
    start=$(now)
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
            result=$(echo "$(now) - $start" | bc)
            break
        fi
        if [ "$(echo "$(now) - $start > $timeout" | bc)" = 1 ]; then
            break
        fi
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    echo "$result"
}

# A stand-in for Ironic on 127.0.0.1:$1: the version document (1.68, so
# the agent makes its TLS certificate as with real Ironic), a lookup that
# finds the node, and heartbeats, each of which appends a line to $2.
ironic_stand_in() {
    python3 - "$1" "$2" >/dev/null 2>&1 <<'PY' &
import http.server, json, sys
port, beats = int(sys.argv[1]), sys.argv[2]
NODE = "9a1bde66-5d43-4a5f-9d5a-2d0f4a6f3b11"
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/":
            self.reply(200, {"default_version": {"version": "1.68", "min_version": "1.1", "id": "v1", "status": "CURRENT"}})
        elif self.path.startswith("/v1/lookup"):
            self.reply(200, {"node": {"uuid": NODE, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
                             "config": {"heartbeat_timeout": 300, "agent_token": "b" * 43}})
        else:
            self.reply(404, {"error_message": "not found"})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/v1/heartbeat/"):
            with open(beats, "a") as f:
                f.write("beat\n")
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.reply(404, {"error_message": "not found"})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
    echo $!
}

# One boot with the stand-in Ironic: prints "KERNEL USERSPACE" in seconds,
# or "fail fail".
split() {
    dir=$1
    log=$(mktemp) beats=$(mktemp)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ironic=$(ironic_stand_in "$port" "$beats")
    cmdline=$(sed -n 's/^ *"cmdline": *"\(.*\)",* *$/\1/p' "$dir/manifest.json" | head -n1)
    start=$(now)
    qemu-system-x86_64 -accel tcg -machine pc -m 768 -display none -no-reboot \
        -monitor none -serial "file:$log" \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "$cmdline ipa-api-url=http://10.0.2.2:$port BOOTIF=01-52-54-00-12-34-56" \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:12:34:56 \
        -netdev user,id=n1,net=10.0.3.0/24 -device rtl8139,netdev=n1,romfile=,mac=52:54:00:12:35:01 \
        -device megasas-gen2,id=m0 \
        >/dev/null 2>&1 &
    pid=$!
    k=fail u=fail
    while kill -0 "$pid" 2>/dev/null; do
        t=$(now)
        if [ "$k" = fail ] && grep -qF 'Run /init' "$log" 2>/dev/null; then
            k=$(echo "$t - $start" | bc)
        fi
        if [ "$k" != fail ] && [ -s "$beats" ]; then
            u=$(echo "$t - $start - $k" | bc)
            break
        fi
        [ "$(echo "$t - $start > $timeout" | bc)" = 1 ] && break
        sleep 0.05
    done
    kill "$pid" "$ironic" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log" "$beats"
    echo "$k $u"
}

# The median of the numbers on stdin (or "fail" when there are none).
median() {
    sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "fail"; else print v[int((NR + 1) / 2)]}'
}

printf '%-10s %12s %12s %10s %10s %9s %10s %7s %7s\n' \
    profile kernel initramfs min-RAM to-agent boot:kern userspace ratio target
for profile in "$@"; do
    dir=$out/$profile
    if [ -n "${IPA_BUILD:-}" ]; then
        (cd "$root" && "$IPA_BUILD" --profile "$profile" --output "$dir" --cache "$cache" -q) >&2
    else
        (cd "$root" && cargo run -q --release -p ipa-build -- --profile "$profile" \
            --output "$dir" --cache "$cache" -q) >&2
    fi
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
    kernels="" users=""
    i=0
    while [ "$i" -lt "$runs" ]; do
        i=$((i + 1))
        set -- $(split "$dir")
        echo "  $profile split $i: kernel $1 s, userspace $2 s" >&2
        if [ "$1" != fail ] && [ "$2" != fail ]; then
            kernels="$kernels $1" users="$users $2"
        fi
    done
    k=$(printf '%s\n' $kernels | median)
    u=$(printf '%s\n' $users | median)
    case "$profile" in
        tinyipa) target='<=0.25' ;;
        coreos) target='<=0.75' ;;
        *) target='-' ;;
    esac
    if [ "$k" != fail ] && [ "$u" != fail ]; then
        ratio=$(printf '%.2f' "$(echo "$u / $k" | bc -l)")
        k=$(printf '%.1f s' "$k") u=$(printf '%.1f s' "$u")
    else
        ratio=-
    fi
    printf '%-10s %12s %12s %10s %10s %9s %10s %7s %7s\n' \
        "$profile" "$ksize" "$isize" "$found" "$took" "$k" "$u" "$ratio" "$target"
done
