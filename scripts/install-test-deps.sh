#!/usr/bin/env bash
# Installs what the tests drive for real, on a fresh Debian/Ubuntu machine (as root). The README's
# test command and .ci/run both call this, so the list lives in one place.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # packer: validates azure-arm templates offline and runs the null/shell-local bake test.
    # supervisor: the real supervisord run-nomad's supervisor mode is tested against.
    # systemd: systemd-analyze verify for the generated unit. zip/unzip/gnupg: fixtures and the
    # benchmark's baseline. golang-go + golang-github-hashicorp-hcl-dev: HashiCorp's own HCL v1
    # parser (the one Nomad's agent config uses), so tests parse our generated config with it.
    # golang-github-hashicorp-go-discover-dev: HashiCorp's go-discover, whose own parser must
    # read every retry_join string run-nomad writes back into the intended arguments.
    # man-db (with groff): renders every tool's generated man pages with warnings on.
    # openssl: the independent X.509 implementation cluster-deploy's generated CA and
    # certificates are verified with (openssl verify, x509 -text).
    apt-get update
    apt-get install -y --no-install-recommends packer supervisor systemd unzip zip gnupg \
        golang-go golang-github-hashicorp-hcl-dev golang-github-hashicorp-go-discover-dev man-db openssl
fi

# Microsoft's Python SDKs (pinned), the independent client cluster-deploy/tests/sdk.rs drives the
# ARM double with. CPython 3.11 with pip/venv is on the machine.
python3 -m venv target/azure-sdk
target/azure-sdk/bin/pip install --quiet --disable-pip-version-check \
    -r cluster-deploy/tests/sdk/requirements.txt
