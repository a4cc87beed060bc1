# Convenience wrapper around meson/ninja.  Every target first makes sure the
# packages are installed (scripts/install-deps.sh is a fast no-op when they are).
BUILD     ?= build
SAN_BUILD ?= build-san
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
MESON_OPTS ?=

.PHONY: all deps setup build check check-unit check-iotests check-style \
        check-sanitizers check-fuzz docs clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	meson setup $(MESON_OPTS) $(BUILD)

setup: deps $(BUILD)/build.ninja

build: setup
	ninja -C $(BUILD)

check: build
	@python3 scripts/run-checks.py --build-dir $(BUILD)

check-style: build
	@scripts/check-style.sh $(BUILD)

$(SAN_BUILD)/build.ninja: | deps
	meson setup $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false $(SAN_BUILD)

check-sanitizers: deps $(SAN_BUILD)/build.ninja
	ninja -C $(SAN_BUILD)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	 python3 scripts/run-checks.py --build-dir $(SAN_BUILD)

# libFuzzer targets (tests/fuzz), built with clang, ASan and UBSan; a short
# run of each (FUZZ_SECONDS) from generated seeds.
$(FUZZ_BUILD)/build.ninja: | deps
	CC=clang meson setup $(MESON_OPTS) -Dfuzzing=true \
	    -Db_sanitize=address,undefined -Db_lundef=false $(FUZZ_BUILD)

check-fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	@scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The README's main command: a live backup of a disk a guest is writing
# (scripts/demo.py: creates the disk, runs blockd, checks the backup).
.PHONY: demo
demo: build
	@python3 scripts/demo.py --build-dir $(BUILD)

# Refreshes the committed copy of the generated QMP reference.
docs: build
	cp $(BUILD)/qapi/qmp-reference.md docs/qmp-reference.md

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
