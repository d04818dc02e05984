# The two front doors: `make demo` builds q3moe and runs the bundled demo model; `make test`
# builds and runs the whole suite (release build, then AddressSanitizer + UBSan, clang -Werror,
# and short fuzzing runs). Both install missing dependencies first (scripts/deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all demo test deps build clean

all: build

deps:
	@bash scripts/deps.sh

build:
	@bash scripts/deps.sh --no-python
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/q3moe run -n 120 -p 'import os\n\n\ndef read_lines(path):\n'

test: deps
	bash scripts/test.sh

clean:
	rm -rf build build-asan build-clang build-fuzz build-cuda build-gpu build-gpu-bundle
