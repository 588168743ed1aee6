#!/usr/bin/env bash
# Benchmark: `ipa-build audit` against detect-secrets (PyPI) on the same
# planted corpus and the same clean Debian tree, in one run, on this machine.
#
#   builder/benches/audit.sh            # prints a Markdown table
#
# Recall: a planted (path, rule) counts as found by ipa-build when a finding
# has that path and rule; detect-secrets has no matching rule names, so it is
# credited with any finding in that file (generous to it). False positives:
# findings in corpus files that hold no planted secret, plus every finding on
# the clean tree (kernel, busybox, OpenSSH, libssl from Debian).
#
# Inputs are built by the test suite (real ssh-keygen/openssl/puttygen keys,
# random well-formed tokens): the `export_corpus` and
# `stock_debian_trees_are_clean` tests of builder/tests/audit.rs.
set -euo pipefail

ws=$(cd "$(dirname "$0")/../.." && pwd)
out="$ws/target/bench/audit"
venv="$ws/target/bench/venv-detect-secrets"
clean="$ws/target/test-data/audit-clean"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ws/target}"
cd "$ws"

rm -rf "$out"
mkdir -p "$out"

echo "building ipa-build (release)..." >&2
cargo build --quiet --release -p ipa-build --bin ipa-build --example audit
bin="$CARGO_TARGET_DIR/release/ipa-build"
if "$bin" audit --help >/dev/null 2>&1; then
    ours=("$bin" audit)
else
    ours=("$CARGO_TARGET_DIR/release/examples/audit")
fi

echo "generating the planted corpus..." >&2
IPA_AUDIT_EXPORT="$out/corpus" cargo test --quiet -p ipa-build --test audit export_corpus >/dev/null
if [ ! -e "$clean/.unpacked" ]; then
    echo "unpacking the clean Debian tree..." >&2
    cargo test --quiet -p ipa-build --test audit stock_debian_trees_are_clean >/dev/null
fi

if [ ! -x "$venv/bin/detect-secrets" ]; then
    echo "installing detect-secrets into $venv..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet detect-secrets
fi

now() { date +%s.%N; }

# run NAME DIR CMD...: JSON on $out/NAME.json, wall seconds on $out/NAME.time
run() {
    local name=$1 dir=$2
    shift 2
    local t0 t1 rc=0
    t0=$(now)
    (cd "$dir" && "$@") >"$out/$name.json" 2>"$out/$name.err" || rc=$?
    t1=$(now)
    echo "$t1 - $t0" | bc >"$out/$name.time"
    echo "$rc" >"$out/$name.rc"
}

echo "scanning..." >&2
run ours-corpus "$out/corpus/tree" "${ours[@]}" --json .
run ours-clean "$clean" "${ours[@]}" --json .
run ds-corpus "$out/corpus/tree" "$venv/bin/detect-secrets" scan --all-files .
run ds-clean "$clean" "$venv/bin/detect-secrets" scan --all-files .

for n in ours-corpus ours-clean; do
    rc=$(cat "$out/$n.rc")
    [ "$rc" -le 1 ] || { echo "$n failed (exit $rc):" >&2; cat "$out/$n.err" >&2; exit 1; }
done
for n in ds-corpus ds-clean; do
    rc=$(cat "$out/$n.rc")
    [ "$rc" -eq 0 ] || { echo "$n failed (exit $rc):" >&2; tail "$out/$n.err" >&2; exit 1; }
done

python3 - "$out" <<'PY'
import json, sys, collections
out = sys.argv[1]
want = [tuple(l.rstrip("\n").split("\t")) for l in open(f"{out}/corpus/expected.tsv")]
planted_paths = {p for p, _ in want}
t = lambda n: float(open(f"{out}/{n}.time").read())

def ours(name):
    r = json.load(open(f"{out}/{name}.json"))
    return {(f["path"], f["rule"]) for f in r["findings"]}, r

def ds(name):
    r = json.load(open(f"{out}/{name}.json"))["results"]
    return {"/" + (p[2:] if p.startswith("./") else p): v for p, v in r.items()}

oc, ocr = ours("ours-corpus")
ol, olr = ours("ours-clean")
dc, dl = ds("ds-corpus"), ds("ds-clean")

by_rule = collections.defaultdict(list)
for p, r in want:
    by_rule[r].append(p)

print("| rule | planted | ipa-build audit | detect-secrets |")
print("|---|---:|---:|---:|")
tot = [0, 0, 0]
for rule in sorted(by_rule):
    paths = by_rule[rule]
    a = sum((p, rule) in oc for p in paths)
    b = sum(p in dc for p in paths)
    tot[0] += len(paths); tot[1] += a; tot[2] += b
    print(f"| {rule} | {len(paths)} | {a} | {b} |")
print(f"| **recall** | {tot[0]} | **{tot[1]}/{tot[0]}** | **{tot[2]}/{tot[0]}** |")
fp_oc = len({p for p, _ in oc} - planted_paths)
fp_dc = sum(len(v) for p, v in dc.items() if p not in planted_paths)
fp_ol = len(olr["findings"])
fp_dl = sum(len(v) for v in dl.values())
print(f"| false positives, corpus decoys | | {fp_oc} | {fp_dc} |")
print(f"| false positives, clean Debian tree ({olr['files_scanned']} files, {olr['bytes_scanned']/2**20:.0f} MiB) | | {fp_ol} | {fp_dl} |")
print(f"| wall time, corpus | | {t('ours-corpus'):.2f} s | {t('ds-corpus'):.2f} s |")
print(f"| wall time, clean tree | | {t('ours-clean'):.2f} s | {t('ds-clean'):.2f} s |")
if fp_dl:
    kinds = collections.Counter(f["type"] for v in dl.values() for f in v)
    print()
    print("detect-secrets findings on the clean tree by type: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
PY
