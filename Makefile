# libwarpcore — build, run and test.
#   make            library (release), fresh header, build/demo, build/deferred, build/stream
#   make run        the C demo on 127.0.0.1:8080, examples/www/ under /static/
#   make test       every test suite (installs what it needs when missing)
#   make header     regenerate include/warpcore.h with cbindgen
#   make bench-compare  the C demo against nginx, Warp, hyper, may_minihttp (wrk, ~10 min)

CARGO    ?= cargo
CC       ?= cc
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
LIBDIR   := $(abspath target/release)
LIB      := $(LIBDIR)/libwarpcore.so
FFI_SRC  := $(wildcard src/ffi/*.rs) cbindgen.toml
RUST_SRC := $(shell find src -name '*.rs') Cargo.toml

.PHONY: all lib header run test test-deps test-rust test-abi test-python clean bench-compare

all: lib include/warpcore.h build/demo build/deferred build/stream

lib: $(LIB)

$(LIB): $(RUST_SRC)
	$(CARGO) build --release --lib
	@touch $@

include/warpcore.h: $(FFI_SRC)
	WARPCORE_BLESS=1 $(CARGO) test --quiet --test header
	@touch $@

header:
	WARPCORE_BLESS=1 $(CARGO) test --quiet --test header

build/%: examples/c/%.c include/warpcore.h $(LIB)
	@mkdir -p build
	$(CC) $(CFLAGS_STRICT) -O2 -Iinclude $< -o $@ -L$(LIBDIR) -lwarpcore -Wl,-rpath,$(LIBDIR) -lpthread

run: all
	./build/demo --host 127.0.0.1 --port 8080 --static /static=examples/www

# Every suite; a missing tool is installed or is an error, never a skip.
test: test-deps all test-rust test-abi test-python
	@echo "make test: all suites passed"

test-deps:
	@bash scripts/test-deps.sh

test-rust: all
	WARPCORE_DEMO=$(abspath build/demo) $(CARGO) test --profile test-opt --lib --tests

test-abi: all
	@bash tests/abi/run.sh

# The Python binding's pytest suite, in .venv (made by the script when missing).
test-python: all
	@bash scripts/python-venv.sh
	cd bindings/python && ../../.venv/bin/python -m pytest

# Peers once per machine: bash ../shared/bench/setup-peers.sh
bench-compare:
	@bash scripts/bench-compare.sh

clean:
	$(CARGO) clean
	rm -rf build
