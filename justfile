# Daftka's everyday commands. `just --list` shows them.

# Run a one-node cluster: data in ./data/a, HTTP on 127.0.0.1:4001, metrics on 127.0.0.1:9568.
run:
    cargo run --release -- --node-name a

# A three-node cluster on loopback, exactly the README's commands: HTTP on 4001-4003, data in d/.
# Ctrl-C stops all three.
cluster:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    bin=target/release/daftka
    trap 'kill 0' EXIT
    $bin --node-name a --cluster-addr 127.0.0.1:7001 --http-addr 127.0.0.1:4001 --metrics-addr 127.0.0.1:9561 --data-dir d/a --cookie s3cret &
    $bin --node-name b --cluster-addr 127.0.0.1:7002 --http-addr 127.0.0.1:4002 --metrics-addr 127.0.0.1:9562 --data-dir d/b --cookie s3cret --seeds 127.0.0.1:7001 &
    $bin --node-name c --cluster-addr 127.0.0.1:7003 --http-addr 127.0.0.1:4003 --metrics-addr 127.0.0.1:9563 --data-dir d/c --cookie s3cret --seeds 127.0.0.1:7001,127.0.0.1:7002 &
    wait

# Every test of the workspace (unit, property, actor, node).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them (warnings are errors).
check:
    cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings

# The standard suite, rows T1-T7, on fresh release nodes of its own (temp data, free ports), a few
# minutes: the table on stdout, every figure in bench.json. Extra arguments go to the suite, e.g.
# `just bench --quick` or `just bench --rows T1,T4`; `daftka bench suite --help` for every option,
# docs/BENCHMARKS.md for the figures.
bench *ARGS:
    cargo build --release
    target/release/daftka bench suite --json bench.json {{ARGS}}

# The fault tests at length: three processes under kill -9 and actor kills, then network partitions
# of 20 s each (root; iproute2 and nftables). CI runs the same tests with shorter cuts.
chaos:
    cargo test --test cluster_chaos -- --nocapture
    MOVES_CHAOS_ROUNDS=12 cargo test --test moves_chaos -- --nocapture
    PARTITION_CUT_SECS=20 cargo test --test partition -- --nocapture

# What CI runs: fmt check, clippy, then the tests.
ci:
    bash .ci/run
