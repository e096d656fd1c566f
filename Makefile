# orderflow: `make demo` (local lab scenario) and `make test` (everything CI checks).
#
# Build output goes to $(CARGO_TARGET_DIR) when set (CI sets /var/cache/orderflow/target so
# that clean clones reuse the build), else ./target.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release

# Kubernetes delivery targets (kind, images, chart, manifest lint) live in mk/*.mk.
.DEFAULT_GOAL := help
-include mk/*.mk

.PHONY: help build crds envtest-install e2e bench bench-tools browser-tools vendor-ui fuzz demo test test-rust lint-rust reference fmt kafka-install kafka-up kafka-down clean-demo

help:
	@echo "make demo         run the lab scenario locally (installs Apache Kafka on first use)"
	@echo "make test         formatting, clippy, unit and integration tests (on Apache Kafka 4.3.1)"
	@echo "make bench        orderflow vs kcat and a Python pipeline, 1M events x 3 runs -> target/bench/results.md (Kafka Streams peers proven equal first)"
	@echo "make e2e          the users' flow on the kind test bed (Kubernetes 1.33 built here): images, helm install, 10k orders, ReplayRequests"
	@echo "make fuzz         the event decoder's property tests with 100,000 cases each (FUZZ_CASES)"
	@echo "make build        release build of every binary"
	@echo "make crds         regenerate helm/orderflow/crds/replayrequest.yaml from the Rust types"
	@echo "make reference    regenerate docs/reference/configuration.md from the services' --help"
	@echo "make kafka-up     start Apache Kafka 4.3.1 on 127.0.0.1:9092 (data in target/kafka)"
	@echo "make kafka-down   stop it"

build:
	$(CARGO) build --release --workspace --bins --locked

# The demo starts its own broker on a free port unless KAFKA_BOOTSTRAP names one.
demo: build
	@if [ -z "$$KAFKA_BOOTSTRAP" ]; then scripts/kafka.sh install; fi
	$(BIN)/orderflow-demo --out target/demo

fmt:
	$(CARGO) fmt --all

# clippy in the release profile: its build scripts (librdkafka's C build among them) and proc
# macros are the ones `make build` and the tests use, compiled once instead of once per profile.
lint-rust:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets --all-features --locked -- -D warnings

# Integration tests start their own brokers (and service processes) on free ports.
# The last line sums cargo's per-binary results: "summary: N passed, N failed, N skipped".
TEST_LOG := $(TARGET_DIR)/cargo-test.log
# The ReplayRequest CRD, generated from the Rust types (a test fails when it is stale).
crds:
	$(CARGO) run -q --release --locked -p replay-controller --bin crdgen > helm/orderflow/crds/replayrequest.yaml
	@echo "wrote helm/orderflow/crds/replayrequest.yaml"

# docs/reference/configuration.md: every service's --help, from the clap definitions (a test
# fails when it is stale: services/system-tests/tests/reference.rs).
reference:
	ORDERFLOW_WRITE_REFERENCE=1 $(CARGO) test -q --release --locked -p orderflow-system-tests --test reference
	@echo "wrote docs/reference/configuration.md"

# kube-apiserver + etcd for the controller tests and make lint (one-time build, cached).
envtest-install:
	scripts/envtest/install-apiserver.sh

# The users' flow on the kind test bed (Kubernetes v1.33 built here, a real kubelet; part of
# `make test`): the bed, the images, helm install, 10,000 orders, ReplayRequests, kubectl logs, the
# dashboard (scripts/k8s/e2e-kind.sh; docs/k8s-test-bed.md). Writes target/e2e-kind/report.md.
e2e: build kafka-install k8s-tools browser-tools
	scripts/k8s/e2e-kind.sh

# Benchmarks (not tests): BENCH_ARGS e.g. "--events 200000 --runs 5"; `make test` runs --smoke.
bench: build kafka-install bench-tools
	$(BIN)/orderflow-bench --out target/bench $(BENCH_ARGS)

# A longer run of the event codec's property tests (make test runs 256 cases each): the
# general and fast decoders, and the hand-written reader and writer against serde.
FUZZ_CASES ?= 100000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release --locked -p orderflow-events --lib codec::

# kcat (apt), the Python peer's venv (pip), oha (cargo install) and the Kafka Streams peers (mvn), once, into the cache.
bench-tools:
	scripts/bench-tools.sh

# Debian's chromium for the dashboard's browser test (services/system-tests/tests/dashboard.rs), once.
browser-tools:
	scripts/browser-tools.sh

# Re-vendor the dashboard's charting library (the files are committed; see the script).
vendor-ui:
	scripts/vendor-ui.sh

# The workspace's unit and integration tests alone: every test binary built once, then run in
# two lanes side by side (scripts/test-lanes.py says why and how).
test-rust: build kafka-install envtest-install k8s-tools bench-tools browser-tools
	@mkdir -p $(TARGET_DIR)
	@CARGO=$(CARGO) scripts/test-lanes.py $(TEST_LOG); rc=$$?; \
	  scripts/test-summary.sh workspace=$(TEST_LOG); exit $$rc

# Everything CI checks: the Kubernetes manifests and chart (lint, mk/k8s.mk), clippy, the
# workspace's tests, then the users' flow on the kind bed (run even when a test failed before it).
# The last line sums both: "summary: N passed, N failed, N skipped".
E2E_LOG := $(TARGET_DIR)/e2e-kind.log
test: lint lint-rust
	@mkdir -p $(TARGET_DIR); failed=""; \
	  $(MAKE) --no-print-directory test-rust || failed="workspace"; \
	  set -o pipefail; $(MAKE) --no-print-directory e2e 2>&1 | tee $(E2E_LOG) || failed="$$failed e2e"; \
	  FAILED="$$failed" scripts/test-summary.sh workspace=$(TEST_LOG) e2e=$(E2E_LOG); [ -z "$$failed" ]

# Apache Kafka 4.3.1 from Maven Central's jars (scripts/kafka.sh; needs Java 17+), once.
kafka-install:
	scripts/kafka.sh install

kafka-up:
	KAFKA_PORT=$${KAFKA_PORT:-9092} scripts/kafka.sh start $(CURDIR)/target/kafka

kafka-down:
	scripts/kafka.sh stop $(CURDIR)/target/kafka

clean-demo:
	rm -rf target/demo
