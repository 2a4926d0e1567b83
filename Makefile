# The two commands of the README: `make demo` and `make test`.
.PHONY: demo test models build

models:
	@scripts/fetch-models.sh >/dev/null

build:
	cargo build --release -p cli

demo: models build
	target/release/hearth run --chat -n 128 --temp 0 \
		-m "$$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf" \
		-p "In two sentences: why do people run language models on their own computers?"

test: models
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
