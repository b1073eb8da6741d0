#!/usr/bin/env bash
# The whole test run, from a machine with only the Rust toolchain: installs what the tests need (Debian
# packages, when root), then the formatting and lint gates, every test of the workspace, and the Docker
# deployment test when a Docker engine answers. `.ci/run` (what CI runs) is exactly this script.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

# What the tests need beyond Rust: the command that proves it is there, and the Debian package that brings it.
#   chromium  the web page test drives headless Chromium (Debian's package; Ubuntu's is a snap wrapper)
#   promtool  the metrics test checks /metrics with Prometheus's own tool (package `prometheus`)
#   prometheus  the same package: the Prometheus test runs the real server against a mesh
#   tmux      the TUI tests drive the real binary in a pseudo-terminal (package `tmux`)
#   ip        the cluster tests build hosts out of network namespaces (package `iproute2`; needs root)
NEEDS=(chromium:chromium promtool:prometheus prometheus:prometheus tmux:tmux ip:iproute2)
missing=()
for need in "${NEEDS[@]}"; do
  pkg="${need#*:}"
  if ! command -v "${need%%:*}" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" $pkg "* ]]; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: the tests need the Debian packages ${missing[*]}, and this script can install them only" >&2
    echo "         as root on a Debian or Ubuntu machine: run it as root, or install them yourself" >&2
    echo "         (apt-get install ${missing[*]}); without them, \`cargo test --workspace --release" >&2
    echo "         --exclude chatmesh-cluster -- --skip page --skip scrape --skip promtool --skip pty::\` runs the rest" >&2
    exit 1
  fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --release
# The Docker deployment (deploy/): image built from scratch, a compose mesh of four, failover, a partition.
if docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1; then
  bash deploy/test.sh
else
  echo "no Docker engine answering: deploy/test.sh skipped"
fi
