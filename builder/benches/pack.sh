#!/usr/bin/env bash
# Packs the same staged trees with ipa-build's packer (zstd default, gzip, xz)
# and with the pipelines the older tools use (find | sort | cpio | gzip -9,
# and pigz -9), and prints one Markdown table: wall time, CPU time
# (user+sys, children included) and output size, all from this one run.
#
#   builder/benches/pack.sh [--tree DIR] [--large DIR] [--runs N]
#
# --tree   the small tree; default: the tinyipa initramfs from out/ if the
#          build has produced one, else a ~30 MB tree of host programs and
#          libraries.
# --large  the large tree; default: the unpacked kernel package in
#          target/test-data (run `cargo test -p ipa-build --test modules`
#          once to fetch it).
# --runs   repetitions per row; the fastest wall time is kept (default 1).
# Levels: a level for zstd can be tried with ZSTD_LEVEL=N (default: the packer's).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ws=$(cd "$here/../.." && pwd)
small=""
large=""
runs=1
while [ $# -gt 0 ]; do
    case "$1" in
        --tree) small=$2; shift 2 ;;
        --large) large=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

for tool in cpio gzip pigz zstd xz /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install cpio pigz zstd xz-utils time)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$small" ]; then
    if [ -f "$ws/out/tinyipa.initramfs" ]; then
        small="$work/tinyipa"
        mkdir -p "$small"
        # The packer's own output: zstd, gzip or xz; the CLI tools detect which.
        case "$(head -c 4 "$ws/out/tinyipa.initramfs" | od -An -tx1 | tr -d ' ')" in
            28b52ffd) dec="zstd -dc" ;;
            fd377a58) dec="xz -dc" ;;
            *) dec="gzip -dc" ;;
        esac
        $dec "$ws/out/tinyipa.initramfs" | (cd "$small" && cpio -idm --quiet --no-absolute-filenames)
        small_name="tinyipa (extracted from out/tinyipa.initramfs)"
    else
        small="$work/host"
        mkdir -p "$small/usr/lib/x86_64-linux-gnu"
        cp -a /usr/sbin /etc "$small/" 2>/dev/null || true
        cp -a /usr/lib/x86_64-linux-gnu/lib[a-c]*.so* "$small/usr/lib/x86_64-linux-gnu/"
        small_name="host programs and libraries"
    fi
else
    small_name="$small"
fi
if [ -z "$large" ]; then
    large=$(ls -d "$ws"/target/test-data/linux-image-*-amd64 2>/dev/null | head -n1 || true)
    [ -n "$large" ] || { echo "no unpacked kernel package in target/test-data; pass --large DIR" >&2; exit 1; }
fi

# PACK_TREE=path/to/pack_tree skips the build (e.g. a binary built elsewhere).
if [ -n "${PACK_TREE:-}" ]; then
    packer=$PACK_TREE
else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ws/target}
    (cd "$ws" && cargo build --quiet --release -p ipa-build --example pack_tree)
    packer="$CARGO_TARGET_DIR/release/examples/pack_tree"
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

# measure NAME COMMAND... : runs the command $runs times, keeps the fastest.
measure() {
    local best_wall="" best_cpu="" out="$work/out"
    for _ in $(seq "$runs"); do
        rm -f "$out"
        sync
        /usr/bin/time -f "%e %U %S" -o "$work/time" bash -c "$1" >/dev/null
        read -r wall user sys <"$work/time"
        if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then
            best_wall=$wall
            best_cpu=$(awk "BEGIN{printf \"%.2f\", $user + $sys}")
        fi
    done
    size=$(stat -c %s "$out")
    echo "$best_wall $best_cpu $size"
}

printf '| tree | packer | wall s | CPU s | size MiB | wall vs gzip -9 | size vs gzip -9 |\n'
printf '|---|---|---:|---:|---:|---:|---:|\n'
for spec in "small|$small|$small_name" "large|$large|$(basename "$large") (unpacked kernel package)"; do
    IFS='|' read -r _ dir name <<<"$spec"
    mib=$(du -sm "$dir" | cut -f1)
    ref=$(measure "cd '$dir' && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -9 > '$work/out'")
    read -r ref_wall _ ref_size <<<"$ref"
    rows=(
        "find, sort, cpio, gzip -9::$ref"
        "find, sort, cpio, pigz -9::$(measure "cd '$dir' && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | pigz -9 > '$work/out'")"
        "ipa-build zstd ${ZSTD_LEVEL:+-$ZSTD_LEVEL}${ZSTD_LEVEL:-(default)}::$(measure "'$packer' '$dir' '$work/out' --compression zstd ${ZSTD_LEVEL:+--level $ZSTD_LEVEL}")"
        "ipa-build gzip::$(measure "'$packer' '$dir' '$work/out' --compression gzip")"
        "ipa-build xz::$(measure "'$packer' '$dir' '$work/out' --compression xz")"
    )
    for row in "${rows[@]}"; do
        label=${row%%::*}
        read -r wall cpu size <<<"${row##*::}"
        awk -v t="$name ($mib MiB)" -v l="$label" -v w="$wall" -v c="$cpu" -v s="$size" -v rw="$ref_wall" -v rs="$ref_size" \
            'BEGIN { printf "| %s | %s | %.2f | %.2f | %.2f | %.2fx faster | %.3f |\n", t, l, w, c, s/1048576, rw/w, s/rs }'
    done
done
