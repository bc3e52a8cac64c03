#!/usr/bin/env bash
# Benchmark: run-nomad at boot, from the moment IMDS has answered to the moment every file is
# written (the agent config, the environment file and the unit, each fsynced and renamed).
#
#   scripts/bench-run-nomad.sh             # 30 runs
#   RUNS=100 scripts/bench-run-nomad.sh
#   RUN_NOMAD_BIN=/path/to/run-nomad scripts/bench-run-nomad.sh   # another build, not rebuilt
#
# What it does:
#   1. builds run-nomad in release mode;
#   2. lays out a fake install under a temporary root as install-nomad leaves a VM
#      (/opt/nomad/{bin,config,data,log}, a nomad user owning the config directory) with a
#      stand-in `nomad` that answers `nomad version` like Nomad 1.10;
#   3. serves the shared IMDS fixture on 127.0.0.1 from this script, recording the monotonic
#      time at which each answer has been written to the socket;
#   4. runs `run-nomad --root ROOT --imds-endpoint ... --no-start --server --num-servers 3
#      --scale-set-name nomad-servers` RUNS times on a fresh root each time (so every file is
#      new and really written), and records when the process has exited (with --no-start it
#      exits right after the last file is durable);
#   5. prints the median and the 90th percentile of "IMDS answer -> files written" and of the
#      whole run (process start -> exit).
#
# Target (issue 9): under 15 ms from IMDS answer to files written, with no fixed sleep or
# polling interval on the boot path. Needs root (run-nomad chowns the config to root:nomad).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-30}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-run-nomad.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

BIN=${RUN_NOMAD_BIN:-}
if [ -z "$BIN" ]; then
    echo "== building run-nomad (release)" >&2
    (cd "$REPO" && cargo build --release --locked -q -p run-nomad)
    BIN="$REPO/target/release/run-nomad"
fi

python3 - "$BIN" "$REPO/../shared/fixtures/imds/instance.json" \
    "$WORK" "$RUNS" <<'PY'
import http.server, json, os, statistics, subprocess, sys, threading, time

binary, fixture, work, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
document = open(fixture, "rb").read()
answered = []

class Imds(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.headers.get("Metadata") != "true":
            self.send_error(400)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(document)))
        self.end_headers()
        self.wfile.write(document)
        self.wfile.flush()
        answered.append(time.monotonic_ns())
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Imds)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = "http://127.0.0.1:%d" % server.server_address[1]

def fake_root(path):
    for d in ["opt/nomad/bin", "opt/nomad/config", "opt/nomad/data", "opt/nomad/log",
              "etc/systemd/system", "etc/supervisor/conf.d"]:
        os.makedirs(os.path.join(path, d))
    with open(os.path.join(path, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/bash\nnomad:x:4646:4646::/opt/nomad:/usr/sbin/nologin\n")
    with open(os.path.join(path, "etc/group"), "w") as f:
        f.write("root:x:0:\nnomad:x:4646:\n")
    os.chown(os.path.join(path, "opt/nomad/config"), 4646, 4646)
    nomad = os.path.join(path, "opt/nomad/bin/nomad")
    with open(nomad, "w") as f:
        f.write("#!/bin/sh\necho 'Nomad v1.10.5'\necho 'BuildDate 2025-09-09T14:35:39Z'\n")
    os.chmod(nomad, 0o755)

to_files, whole = [], []
for i in range(runs):
    root = os.path.join(work, "root%d" % i)
    fake_root(root)
    answered.clear()
    started = time.monotonic_ns()
    done = subprocess.run(
        [binary, "--root", root, "--imds-endpoint", endpoint, "--no-start", "-q",
         "--config-dir", "/opt/nomad/config", "--data-dir", "/opt/nomad/data",
         "--bin-dir", "/opt/nomad/bin", "--log-dir", "/opt/nomad/log",
         "--server", "--num-servers", "3", "--scale-set-name", "nomad-servers"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    ended = time.monotonic_ns()
    if done.returncode != 0 or len(answered) != 1:
        sys.exit("run %d failed (%d answers): %s" % (i, len(answered), done.stderr.decode()))
    for name in ["opt/nomad/config/default.hcl", "etc/systemd/system/nomad.service"]:
        assert os.path.exists(os.path.join(root, name)), name
    to_files.append((ended - answered[0]) / 1e6)
    whole.append((ended - started) / 1e6)

def p90(values):
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]

print("runs: %d" % runs)
print("IMDS answer -> files written: median %.2f ms, p90 %.2f ms, min %.2f ms"
      % (statistics.median(to_files), p90(to_files), min(to_files)))
print("whole run (start -> exit):    median %.2f ms, p90 %.2f ms, min %.2f ms"
      % (statistics.median(whole), p90(whole), min(whole)))
PY
