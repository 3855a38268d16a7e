# libwarpcore — build, run and test.
#   make            library (release), fresh header, build/demo, build/deferred, build/stream
#   make run        the C demo on 127.0.0.1:8080, examples/www/ under /static/
#   make test       every test suite (installs what it needs when missing)
#   make header     regenerate include/warpcore.h with cbindgen
#   make bench      criterion micro benchmarks + wrk load runs of the demos (~15 min)
#   make bench-compare  the same with nginx, Warp, hyper, granian, gunicorn (~30 min)
#   make bench-scale    the C demo with 1, 2, 4, … workers up to the core count
#   make bench-smoke    one short checked run of each (part of make test)
#   make haskell    the Haskell binding (bindings/haskell), build/demo-hs, build/scotty-hs
#   make haskell-install  register the warpcore package in the user's GHC package db

CARGO    ?= cargo
CC       ?= cc
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
LIBDIR   := $(abspath target/release)
LIB      := $(LIBDIR)/libwarpcore.so
FFI_SRC  := $(wildcard src/ffi/*.rs) cbindgen.toml
RUST_SRC := $(shell find src -name '*.rs') Cargo.toml

.PHONY: all lib header run test test-deps test-rust test-abi test-python clean bench bench-compare bench-scale bench-smoke

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
test: test-deps all test-rust test-abi test-python test-haskell bench-smoke
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

# Benchmarks (benches/harness/bench.py; results in benches/results/, the README
# table between the bench markers). Extra harness flags: BENCH_ARGS='--rounds 5'.
bench: all
	@bash scripts/bench.sh bench $(BENCH_ARGS)

# Installs and builds the peers when missing (benches/peers/setup.sh).
bench-compare: all
	@bash scripts/bench.sh compare $(BENCH_ARGS)

bench-scale: all
	@bash scripts/bench.sh scale $(BENCH_ARGS)

# The Haskell demo is expected here, so it is built first (make test built it already).
bench-smoke: all haskell
	@bash scripts/bench.sh smoke $(BENCH_ARGS)

clean:
	$(CARGO) clean
	rm -rf build

# Haskell binding: built with Cabal's Setup.hs from Debian's GHC, offline.
HS_BUILD := $(abspath build/haskell)
HS_SETUP := $(HS_BUILD)/setup
HS_SRC   := $(shell find bindings/haskell -name '*.hs' -o -name '*.hsc' -o -name '*.[ch]' -o -name '*.cabal')
HS_GHC   := ghc -v0 -O2 -threaded -rtsopts -package-db $(HS_BUILD)/dist/package.conf.inplace -package warpcore

.PHONY: haskell haskell-deps haskell-install test-haskell

haskell: build/demo-hs build/scotty-hs

haskell-deps:
	@bash scripts/haskell-deps.sh

$(HS_SETUP): bindings/haskell/Setup.hs | haskell-deps
	@mkdir -p $(HS_BUILD)
	ghc -v0 -O0 -package Cabal $< -o $@ -outputdir $(HS_BUILD)/setup-obj

$(HS_BUILD)/dist/.built: $(HS_SETUP) $(HS_SRC) $(LIB) include/warpcore.h
	cd bindings/haskell && $(HS_SETUP) configure --user --enable-tests --builddir=$(HS_BUILD)/dist \
	  && $(HS_SETUP) build --builddir=$(HS_BUILD)/dist
	@touch $@

build/demo-hs: examples/haskell/Demo.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) -outputdir $(HS_BUILD)/obj-demo $< -o $@

build/scotty-hs: examples/haskell/Scotty.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) -outputdir $(HS_BUILD)/obj-scotty $< -o $@

haskell-install: $(HS_BUILD)/dist/.built
	cd bindings/haskell && $(HS_SETUP) install --builddir=$(HS_BUILD)/dist

test-haskell: haskell
	cd bindings/haskell && WARPCORE_ROOT=$(CURDIR) WARPCORE_DEMO_HS=$(abspath build/demo-hs) \
	  $(HS_SETUP) test --builddir=$(HS_BUILD)/dist --show-details=direct
