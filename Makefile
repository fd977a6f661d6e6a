# The two commands of the README. Everything else is CMake and ctest.
#   make demo   install what is missing, build, run LLM-Sentinel locally on a sample workload
#               (make demo-backtest: the offline backtest of sentinel-detect on a bundled series)
#   make test   install what is missing, build normally and with ASan+UBSan, run every test,
#               then build the libFuzzer targets with clang and run each for 10 s
#   make fuzz   the libFuzzer targets for FUZZ_SECONDS each (default 600; docs/testing.md)

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
FUZZ_DIR  ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 10
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan build-fuzz test test-release test-asan test-fuzz fuzz demo demo-backtest format \
	clean

all: build

deps:
	@./deploy/local/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSENTINEL_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_DIR) -j$(JOBS)

test-release: build
	@echo "== tests: release build =="
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	@echo "== tests: ASan+UBSan build =="
	@cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

# The fuzz targets need clang (libFuzzer), ASan+UBSan and a build dir of their own.
build-fuzz: deps
	@cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DSENTINEL_FUZZ=ON -DSENTINEL_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(FUZZ_DIR) -j$(JOBS) --target fuzzers

test-fuzz: build-fuzz
	@echo "== tests: libFuzzer targets, $(FUZZ_TEST_SECONDS) s each =="
	@cd $(FUZZ_DIR) && SENTINEL_FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) ctest -L fuzz --output-on-failure \
		-j2 --timeout $$(( $(FUZZ_TEST_SECONDS) + 300 ))

fuzz: build-fuzz
	@echo "== fuzzing: $(FUZZ_SECONDS) s each, 2 at a time =="
	@cd $(FUZZ_DIR) && SENTINEL_FUZZ_SECONDS=$(FUZZ_SECONDS) ctest -L fuzz --output-on-failure \
		-j2 --timeout $$(( $(FUZZ_SECONDS) + 300 ))

test: test-release test-asan test-fuzz

demo: build
	@./deploy/local/demo.sh $(BUILD_DIR)

demo-backtest: build
	@./deploy/local/demo-backtest.sh $(BUILD_DIR)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
