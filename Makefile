# The two commands of the README: `make demo` and `make test`.
.PHONY: demo test models build

models:
	@scripts/fetch-models.sh >/dev/null

build:
	cargo build --release -p cli

demo: models build
	target/release/hearth inspect "$$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf"

test: models
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
