# The two commands of the README: `make demo` and `make test`.
# Both install what a fresh machine lacks (cmake) first.

.PHONY: deps test-deps demo test check lint bench loadbench

deps:
	@./scripts/install-deps.sh

test-deps:
	@./scripts/install-deps.sh --test

# The gateway on the bundled demo config, with its sample backends.
demo: deps
	cargo run --release -- demo

# Every test: unit, integration (real gateway, real backends on loopback).
test: test-deps
	cargo test --all-targets

# Validate every shipped config.
check: deps
	cargo run --quiet -- check conf/*.toml

lint: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

bench: deps
	cargo bench

# Side-by-side load benchmark vs nginx, HAProxy and bare Pingora (about 8 min).
loadbench: deps
	benches/load/run.sh
