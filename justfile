# Daftka's everyday commands. `just --list` shows them.

# Run a one-node cluster: data in ./data/a, HTTP on 127.0.0.1:4001, metrics on 127.0.0.1:9568.
run:
    cargo run --release -- --node-name a

# Every test of the workspace (unit, property, actor, node).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them (warnings are errors).
check:
    cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings

# For now the plain cargo bench of every crate; the bench suite itself comes with the performance issue.
bench:
    cargo bench --workspace

# What CI runs: fmt check, clippy, then the tests.
ci:
    bash .ci/run
