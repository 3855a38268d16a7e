# libwarpcore — build, run and test.
#   make            library (release), fresh header, build/demo, build/deferred, build/stream
#   make run        the C demo on 127.0.0.1:8080, examples/www/ under /static/
#   make test       every test suite (installs what it needs when missing), lint first
#   make lint       cargo fmt --check and cargo clippy -D warnings
#   make header     regenerate include/warpcore.h with cbindgen
#   make test-abidiff   abidiff of the library's ABI against the recorded release's (abi/)
#   make abi-record     record the built library's ABI in abi/ (when a release is made)
#   make bench      criterion micro benchmarks + wrk load runs of the demos, uploads vs nginx (~20 min)
#   make bench-compare  the same with nginx, Warp, hyper, granian, gunicorn, bjoern (~30 min)
#   make bench-scale    the C demo with 1, 2, 4, … workers up to the core count
#   make bench-smoke    one short checked run of each (part of make test)
#   make haskell    the Haskell binding (bindings/haskell), build/demo-hs, build/scotty-hs,
#                   build/listen-hs and build/listen-warp, build/dropin-hs and build/dropin-warp
#   make haskell-install  register the warpcore package in the user's GHC package db
#   make install    the library, its header and warpcore.pc under PREFIX (/usr/local); DESTDIR honoured
#   make uninstall  removes what make install installed

CARGO    ?= cargo
CC       ?= cc
CFLAGS_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
LIBDIR   := $(abspath target/release)
LIB      := $(LIBDIR)/libwarpcore.so
FFI_SRC  := $(wildcard src/ffi/*.rs) cbindgen.toml
RUST_SRC := $(shell find src -name '*.rs') Cargo.toml build.rs abi/libwarpcore.map
# The version is Cargo.toml's; the library's soname is libwarpcore.so.MAJOR (build.rs).
VERSION       := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
VERSION_MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME        := libwarpcore.so.$(VERSION_MAJOR)
# Programs linked in the tree record the soname: the link lets them load target/release's library.
SONAME_LINK   := $(LIBDIR)/$(SONAME)

.PHONY: all lib header run lint test test-deps test-rust test-abi test-abidiff abi-record test-python test-install test-docs clean bench bench-compare bench-scale bench-smoke
.PHONY: install uninstall

all: lib include/warpcore.h build/demo build/deferred build/stream

lib: $(LIB) $(SONAME_LINK)

# Symbol versions (build.rs) for the library that ships: the release profile's
# single codegen unit keeps each function with its `.symver` line. Cargo is
# asked every time (a no-op when fresh): a library a bare `cargo build
# --release` left without versions is newer than the sources, and only cargo
# knows it was built without WARPCORE_SYMBOL_VERSIONS. Its date changes only
# when cargo writes it, so what links against it is remade only then.
$(LIB): $(RUST_SRC) FORCE
	WARPCORE_SYMBOL_VERSIONS=1 $(CARGO) build --release --lib

.PHONY: FORCE
FORCE:

$(SONAME_LINK): $(LIB)
	ln -sf libwarpcore.so $@

include/warpcore.h: $(FFI_SRC)
	WARPCORE_BLESS=1 $(CARGO) test --quiet --test header header_is_fresh
	@touch $@

header:
	WARPCORE_BLESS=1 $(CARGO) test --quiet --test header header_is_fresh

build/%: examples/c/%.c include/warpcore.h $(LIB) $(SONAME_LINK)
	@mkdir -p build
	$(CC) $(CFLAGS_STRICT) -O2 -Iinclude $< -o $@ -L$(LIBDIR) -lwarpcore -Wl,-rpath,$(LIBDIR) -lpthread

run: all
	./build/demo --host 127.0.0.1 --port 8080 --static /static=examples/www

# Every suite; a missing tool is installed or is an error, never a skip.
test: test-deps all lint test-rust test-abi test-abidiff test-python test-haskell test-install test-docs bench-smoke
	@echo "make test: all suites passed"

# The code's own habits: rustfmt (rustfmt.toml) and clippy with warnings as errors.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --profile test-opt -- -D warnings

test-deps:
	@bash scripts/test-deps.sh

# tests/demo.rs drives the Haskell demo's GET /ws too: it is built first.
test-rust: all haskell
	WARPCORE_DEMO=$(abspath build/demo) WARPCORE_DEMO_HS=$(abspath build/demo-hs) $(CARGO) test --profile test-opt --lib --tests

test-abi: all
	@bash tests/abi/run.sh

# The ABI against the recorded release's (abi/libwarpcore.so.0.abi, libabigail):
# an incompatible change fails with abidiff's report; added functions pass.
test-abidiff: all
	@bash scripts/abi.sh check

# Rewrites abi/libwarpcore.so.0.abi from the built library: when a release is made.
abi-record: all
	@bash scripts/abi.sh record

# The Python binding's pytest suite, in .venv (made by the script when missing).
test-python: all
	@bash scripts/python-venv.sh
	cd bindings/python && ../../.venv/bin/python -m pytest

# make install into a temporary prefix: files, links, soname, exported symbols,
# pkg-config, the C demo built with `cc demo.c $(pkg-config --cflags --libs warpcore)`
# and asked for /, make uninstall.
test-install: all
	@bash tests/install/run.sh

# The README's quick starts (C, Python, Haskell) run as written, and docs/
# names every result code and every setting of include/warpcore.h.
test-docs: all haskell
	@bash scripts/python-venv.sh
	@bash tests/docs/run.sh

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

haskell: build/demo-hs build/scotty-hs build/listen-hs build/listen-warp build/dropin-hs build/dropin-warp

haskell-deps:
	@bash scripts/haskell-deps.sh

$(HS_SETUP): bindings/haskell/Setup.hs | haskell-deps
	@mkdir -p $(HS_BUILD)
	ghc -v0 -O0 -package Cabal $< -o $@ -outputdir $(HS_BUILD)/setup-obj

$(HS_BUILD)/dist/.built: $(HS_SETUP) $(HS_SRC) $(LIB) $(SONAME_LINK) include/warpcore.h
	cd bindings/haskell && $(HS_SETUP) configure --user --enable-tests --builddir=$(HS_BUILD)/dist \
	  && $(HS_SETUP) build --builddir=$(HS_BUILD)/dist
	@touch $@

# -qg: with several capabilities, collect the small nursery on one thread
# instead of stopping and syncing every capability for a parallel GC.
build/demo-hs: examples/haskell/Demo.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) "-with-rtsopts=-qg" -outputdir $(HS_BUILD)/obj-demo $< -o $@

build/scotty-hs: examples/haskell/Scotty.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) -outputdir $(HS_BUILD)/obj-scotty $< -o $@

build/listen-hs: examples/haskell/Listen.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) -outputdir $(HS_BUILD)/obj-listen $< -o $@

# The same program built against Warp itself: what the tests compare with.
build/listen-warp: examples/haskell/Listen.hs | haskell-deps
	@mkdir -p $(HS_BUILD)
	ghc -v0 -O1 -threaded -DWARP -package warp -outputdir $(HS_BUILD)/obj-listen-warp $< -o $@

# Five WAI applications (Scotty, wai-app-static, wai-extra, wai-websockets,
# a plain one) built against warpcore and against Warp: DropInSpec compares them.
build/dropin-hs: examples/haskell/DropIn.hs $(HS_BUILD)/dist/.built
	$(HS_GHC) -O1 -outputdir $(HS_BUILD)/obj-dropin $< -o $@

build/dropin-warp: examples/haskell/DropIn.hs | haskell-deps
	@mkdir -p $(HS_BUILD)
	ghc -v0 -O1 -threaded -DWARP -package warp -outputdir $(HS_BUILD)/obj-dropin-warp $< -o $@

haskell-install: $(HS_BUILD)/dist/.built
	cd bindings/haskell && $(HS_SETUP) install --builddir=$(HS_BUILD)/dist

test-haskell: haskell
	cd bindings/haskell && WARPCORE_ROOT=$(CURDIR) WARPCORE_DEMO_HS=$(abspath build/demo-hs) \
	  WARPCORE_LISTEN_HS=$(abspath build/listen-hs) WARPCORE_LISTEN_WARP=$(abspath build/listen-warp) \
	  WARPCORE_DROPIN_HS=$(abspath build/dropin-hs) WARPCORE_DROPIN_WARP=$(abspath build/dropin-warp) \
	  $(HS_SETUP) test --builddir=$(HS_BUILD)/dist --show-details=direct

# Installing, as C libraries install: libwarpcore.so.VERSION with its soname
# link libwarpcore.so.MAJOR and the link libwarpcore.so for -lwarpcore,
# libwarpcore.a, warpcore.h and warpcore.pc (Libs.private: what the Rust
# standard library in the static archive needs on Linux). PREFIX, libdir,
# includedir and pkgconfigdir may be set; DESTDIR stages the files elsewhere
# while warpcore.pc keeps the final paths. The library is copied under a
# temporary name and renamed, so that programs running from an older copy keep
# their mapping. As root, into /usr/lib or /usr/local/lib without DESTDIR,
# ldconfig refreshes the loader's cache (LDCONFIG=true skips it).
PREFIX       ?= /usr/local
libdir       ?= $(PREFIX)/lib
includedir   ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig
INSTALL      ?= install
LDCONFIG     ?= ldconfig
# Paths under PREFIX are written relative to ${prefix} in warpcore.pc, so that
# `pkg-config --define-prefix` can relocate it.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: lib include/warpcore.h warpcore.pc.in
	$(INSTALL) -d $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir)
	$(INSTALL) -m 755 $(LIB) $(DESTDIR)$(libdir)/.libwarpcore.so.$(VERSION).new
	mv -f $(DESTDIR)$(libdir)/.libwarpcore.so.$(VERSION).new $(DESTDIR)$(libdir)/libwarpcore.so.$(VERSION)
	ln -sf libwarpcore.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(libdir)/libwarpcore.so
	$(INSTALL) -m 644 $(LIBDIR)/libwarpcore.a $(DESTDIR)$(libdir)/libwarpcore.a
	$(INSTALL) -m 644 include/warpcore.h $(DESTDIR)$(includedir)/warpcore.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_path,$(libdir))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(includedir))|g' -e 's|@VERSION@|$(VERSION)|g' \
	    warpcore.pc.in > $(DESTDIR)$(pkgconfigdir)/warpcore.pc
	chmod 644 $(DESTDIR)$(pkgconfigdir)/warpcore.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null \
	    && { [ "$(libdir)" = /usr/local/lib ] || [ "$(libdir)" = /usr/lib ]; }; then \
	  echo "$(LDCONFIG)"; $(LDCONFIG); fi

uninstall:
	rm -f $(DESTDIR)$(libdir)/libwarpcore.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME) \
	      $(DESTDIR)$(libdir)/libwarpcore.so $(DESTDIR)$(libdir)/libwarpcore.a \
	      $(DESTDIR)$(includedir)/warpcore.h $(DESTDIR)$(pkgconfigdir)/warpcore.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null \
	    && { [ "$(libdir)" = /usr/local/lib ] || [ "$(libdir)" = /usr/lib ]; }; then \
	  echo "$(LDCONFIG)"; $(LDCONFIG); fi
