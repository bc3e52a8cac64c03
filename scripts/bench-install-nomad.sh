#!/usr/bin/env bash
# Benchmark: install-nomad against `curl` + `sha256sum -c` + `unzip` doing the same download,
# check and extraction of a ~200 MB release served from a loopback HTTP server.
#
#   scripts/bench-install-nomad.sh            # 5 runs of each, default sizes
#   RUNS=9 BINARY_MB=1100 scripts/bench-install-nomad.sh
#
# What it does:
#   1. builds install-nomad in release mode;
#   2. makes a stand-in `nomad` binary of BINARY_MB MiB (default 550) by concatenating the ELF
#      executables and libraries of this machine (/usr/lib/x86_64-linux-gnu, /usr/bin), so it
#      compresses like a real Go binary does (~0.35), and zips it with `zip -6` as HashiCorp's
#      zips are: ~200 MB for the default size;
#   3. writes SHA256SUMS, signs it with a throw-away gpg Ed25519 key (both .<KEYID>.sig and .sig),
#      and lays it out like releases.hashicorp.com under a temporary directory;
#   4. serves that directory with `python3 -m http.server` on 127.0.0.1;
#   5. alternates RUNS times: the baseline (curl to a file, sha256sum -c, unzip -q) and a fresh
#      install-nomad into an empty root (signature check, download with hashing, extraction,
#      fsync, user, directories), each under /usr/bin/time for wall time and peak RSS (the
#      baseline's RSS is the largest of its three programs);
#   6. prints every run and the medians, and the ratio install-nomad / baseline;
#   7. runs install-nomad once more with -v and prints where its time went: the download (with
#      hashing) and the extraction's breakdown (inflating, waiting for the writer, writing,
#      hashing, background fdatasync, final fsync), and the baseline's three steps timed apart.
#
# Targets (issue 9): install-nomad at most 0.4x the baseline's wall time, peak RSS flat with the
# archive size (and under 32 MB).
# Needs root (install-nomad chowns to root and to the nomad user it creates in the test root).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
BINARY_MB=${BINARY_MB:-550}
VERSION=1.99.0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-install-nomad.XXXXXX")
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ -d "$WORK/gnupg" ]; then GNUPGHOME="$WORK/gnupg" gpgconf --kill gpg-agent 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for tool in curl unzip zip sha256sum gpg python3; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${need[@]}"; do
        case "$tool" in gpg) pkgs+=(gnupg) ;; python3) pkgs+=(python3) ;; *) pkgs+=("$tool") ;; esac
    done
    echo "installing ${pkgs[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

echo "== building install-nomad (release)" >&2
(cd "$REPO" && cargo build --release --locked -q -p install-nomad)
BIN="$REPO/target/release/install-nomad"

echo "== making a ${BINARY_MB} MiB stand-in binary from this machine's ELF files" >&2
python3 - "$WORK/nomad" "$BINARY_MB" <<'PY'
import os, sys
out_path, mib = sys.argv[1], int(sys.argv[2])
target = mib * 1024 * 1024
files = []
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/bin"):
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        files.append(path)
            except OSError:
                pass
if not files:
    sys.exit("no ELF files found to build the payload from")
written = 0
with open(out_path, "wb") as out:
    i = 0
    while written < target:
        with open(files[i % len(files)], "rb") as f:
            data = f.read(target - written)
        out.write(data)
        written += len(data)
        i += 1
PY
chmod 0755 "$WORK/nomad"

REL="$WORK/mirror/nomad/$VERSION"
mkdir -p "$REL"
ZIP="nomad_${VERSION}_linux_amd64.zip"
(cd "$WORK" && zip -q -X -6 "$REL/$ZIP" nomad)
ZIP_BYTES=$(stat -c %s "$REL/$ZIP")
BIN_BYTES=$(stat -c %s "$WORK/nomad")

echo "== signing SHA256SUMS with a throw-away gpg key" >&2
export GNUPGHOME="$WORK/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key "Benchmark Mirror <bench@example.invalid>" ed25519 sign never 2>/dev/null
FPR=$(gpg --list-keys --with-colons | awk -F: '/^fpr/ {print $10; exit}')
gpg --armor --export "$FPR" >"$WORK/key.asc"
(cd "$REL" && sha256sum "$ZIP" >"nomad_${VERSION}_SHA256SUMS" &&
    gpg --batch --quiet --detach-sign -o "nomad_${VERSION}_SHA256SUMS.sig" "nomad_${VERSION}_SHA256SUMS" &&
    cp "nomad_${VERSION}_SHA256SUMS.sig" "nomad_${VERSION}_SHA256SUMS.${FPR: -8}.sig")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/mirror" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/nomad/$VERSION/nomad_${VERSION}_SHA256SUMS" 2>/dev/null && break
    sleep 0.1
done
URL="http://127.0.0.1:$PORT"

printf '#!/bin/sh\nexit 0\n' >"$WORK/run-nomad"
# Warm the page cache for the server's file, as a mirror would have it.
cat "$REL/$ZIP" >/dev/null

baseline() {
    local dir="$WORK/baseline"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$REL/nomad_${VERSION}_SHA256SUMS" "$dir/"
    (cd "$dir" && /usr/bin/time -f "%e %M" -o "$WORK/time.txt" sh -c \
        "curl -fsS -o '$ZIP' '$URL/nomad/$VERSION/$ZIP' && sha256sum -c --quiet 'nomad_${VERSION}_SHA256SUMS' && unzip -q -o '$ZIP'")
    cmp -s "$dir/nomad" "$WORK/nomad" || { echo "baseline extracted the wrong bytes" >&2; exit 1; }
}

ours() {
    local root="$WORK/root"
    rm -rf "$root" && mkdir -p "$root/etc"
    echo 'root:x:0:0:root:/root:/bin/bash' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$BIN" --version "$VERSION" --arch amd64 \
        --root "$root" --download-url "$URL" --public-key "$WORK/key.asc" \
        --run-nomad "$WORK/run-nomad" --quiet
    cmp -s "$root/opt/nomad/bin/nomad" "$WORK/nomad" || { echo "install-nomad installed the wrong bytes" >&2; exit 1; }
}

echo "== $RUNS runs each: zip $((ZIP_BYTES / 1000000)) MB, binary $((BIN_BYTES / 1000000)) MB" >&2
base_times=() base_rss=() our_times=() our_rss=()
printf '%-4s %-30s %-30s\n' run "curl+sha256sum+unzip (s, KB)" "install-nomad (s, KB)"
for i in $(seq "$RUNS"); do
    # Alternate the order so neither side always runs with the other's dirty pages in flight.
    if [ $((i % 2)) -eq 1 ]; then
        baseline && read -r bt br <"$WORK/time.txt"
        ours && read -r ot orss <"$WORK/time.txt"
    else
        ours && read -r ot orss <"$WORK/time.txt"
        baseline && read -r bt br <"$WORK/time.txt"
    fi
    base_times+=("$bt") base_rss+=("$br") our_times+=("$ot") our_rss+=("$orss")
    printf '%-4s %-30s %-30s\n' "$i" "$bt s, $br KB" "$ot s, $orss KB"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
bt=$(median "${base_times[@]}")
ot=$(median "${our_times[@]}")
br=$(median "${base_rss[@]}")
orss=$(median "${our_rss[@]}")
max_rss=$(printf '%s\n' "${our_rss[@]}" | sort -g | tail -1)
echo
echo "median wall time: baseline ${bt} s, install-nomad ${ot} s, ratio $(awk -v a="$ot" -v b="$bt" 'BEGIN {printf "%.2f", a / b}')x (target <= 0.4x)"
echo "median peak RSS:  baseline ${br} KB, install-nomad ${orss} KB (max ${max_rss} KB, target < 32768 KB)"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine slows both sides)"

echo
echo "where the time goes (one more run of each, timed by step):"
root="$WORK/root"
rm -rf "$root" && mkdir -p "$root/etc"
echo 'root:x:0:0:root:/root:/bin/bash' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
"$BIN" --version "$VERSION" --arch amd64 --root "$root" --download-url "$URL" \
    --public-key "$WORK/key.asc" --run-nomad "$WORK/run-nomad" -v 2>&1 |
    grep -E '^ *(INFO|DEBUG) (downloaded|extracted) ' | sed 's/^ *[A-Z]* /  install-nomad: /'
dir="$WORK/baseline"
rm -rf "$dir" && mkdir -p "$dir" && cp "$REL/nomad_${VERSION}_SHA256SUMS" "$dir/"
for step in "curl -fsS -o '$ZIP' '$URL/nomad/$VERSION/$ZIP'" \
    "sha256sum -c --quiet 'nomad_${VERSION}_SHA256SUMS'" "unzip -q -o '$ZIP'"; do
    (cd "$dir" && /usr/bin/time -f "  baseline: %e s  $step" sh -c "$step") 2>&1 | sed "s|$URL|<mirror>|"
done
echo "machine: $(nproc) CPU(s), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
