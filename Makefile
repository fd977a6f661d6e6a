# The two commands of the README. Everything else is CMake and ctest.
#   make demo   install what is missing, build, run LLM-Sentinel locally on a sample workload
#   make test   install what is missing, build normally and with ASan+UBSan, run every test

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan test test-release test-asan demo format clean

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

test: test-release test-asan

demo: build
	@./deploy/local/demo.sh $(BUILD_DIR)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
