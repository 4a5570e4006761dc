# OpenExec build. `make` builds build/openexec; `make test` runs everything.
# Only two set-up commands are needed on a fresh Debian machine:
# `make run` and `make test` (both install dependencies first).

CC      ?= cc
# Debian -dev packages the build links against, and the tools the tests use.
PKGS     = libcrypto sqlite3 libmicrohttpd rdkafka avro-c libpq
DEB_PKGS = pkg-config libssl-dev libsqlite3-dev libmicrohttpd-dev librdkafka-dev \
           libavro-dev python3 python3-cryptography python3-confluent-kafka \
           python3-avro kcat curl clang libclang-rt-14-dev clang-format \
           python3-psycopg2 postgresql libpq-dev default-jdk-headless maven

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
              -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -g -I.
OPT     ?= -O2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

# SANITIZE=1 builds into build/san with AddressSanitizer + UBSan.
ifeq ($(SANITIZE),1)
BUILD   = build/san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT     = -O1
else
BUILD   = build
SANFLAGS =
endif

CFLAGS  = $(CFLAGS_BASE) $(OPT) $(SANFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS = $(SANFLAGS)

ENGINE_SRC = $(wildcard engine/*.c)
HTTP_SRC   = $(wildcard admin-http/*.c)
WORKER_SRC = $(wildcard worker/*.c)
LEDGER_SRC = $(wildcard ledger/*.c)
CMD_SRC    = $(wildcard cmd/*.c)
LIB_SRC    = $(ENGINE_SRC) $(LEDGER_SRC) $(HTTP_SRC) $(WORKER_SRC)
LIB_OBJ    = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/schemas.o
CMD_OBJ    = $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC   = $(wildcard tests/engine/test_*.c tests/worker/test_*.c)
UNIT_BIN   = $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(UNIT_SRC)))

# The first python3 on PATH that sees Debian's python3-* packages.
PYTHON ?= $(shell for p in $$(which -a python3); do \
            $$p -c 'import cryptography, confluent_kafka, avro, psycopg2' 2>/dev/null \
            && { echo $$p; break; }; done)

.PHONY: kafka kafka-down
.PHONY: all deps run test check unit unit-san clean bench format format-check fuzz fuzz-build fuzz-smoke

all: $(BUILD)/openexec

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libopenexec.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/openexec: $(CMD_OBJ) $(BUILD)/libopenexec.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The Avro schemas are compiled into the binary as C strings.
$(BUILD)/gen/schemas.c: schemas/execution_request.avsc schemas/receipt.avsc
	@mkdir -p $(dir $@)
	{ printf '/* Generated from schemas/ by make. */\n'; \
	  for f in execution_request receipt; do \
	    printf 'const char oe_schema_%s[] =\n' $$f; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' schemas/$$f.avsc; \
	    printf ';\n'; \
	  done; } > $@

$(BUILD)/obj/gen/schemas.o: $(BUILD)/gen/schemas.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-variable-declarations -c $< -o $@

vpath test_%.c tests/engine tests/worker

$(BUILD)/tests/%: %.c $(BUILD)/libopenexec.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libopenexec.a $(LDFLAGS) $(PKG_LIBS)

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)

# Installs exactly the Debian packages above, and only when something is
# missing (so it is quick and needs no network on a ready machine).
deps:
	@if pkg-config --exists $(PKGS) 2>/dev/null && command -v curl >/dev/null \
	    && command -v kcat >/dev/null && command -v clang-format >/dev/null \
	    && command -v pg_config >/dev/null && [ -d /usr/lib/postgresql ] \
	    && command -v java >/dev/null && command -v mvn >/dev/null \
	    && [ -n "$(PYTHON)" ] && $(FUZZ_RUNTIME_OK); then :; else \
	  echo "installing Debian packages: $(DEB_PKGS)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PKGS); \
	fi

run: deps
	$(MAKE) all
	./build/openexec run

# A one-node Apache Kafka (KRaft) for development, from the broker's jars on
# Maven Central (fetched once into build/kafka/), with our topics; it runs
# in the background until `make kafka-down`.
KAFKA_DEV = build/kafka-dev
kafka: deps
	$(MAKE) all
	@if [ -f $(KAFKA_DEV)/nodes ] && tests/kafka/kafka.sh wait --dir $(KAFKA_DEV) --timeout 5 2>/dev/null; then \
	  echo "already running"; else \
	  tests/kafka/kafka.sh down --dir $(KAFKA_DEV) 2>/dev/null; rm -rf $(KAFKA_DEV); \
	  tests/kafka/kafka.sh up --dir $(KAFKA_DEV) >/dev/null || exit 1; fi
	@B=$$(cat $(KAFKA_DEV)/bootstrap); ./build/openexec topics --brokers $$B --partitions 16 && \
	  echo "Apache Kafka: bootstrap.servers=$$B (stop it with: make kafka-down)" && \
	  echo "run a worker on it:  ./build/openexec run --brokers $$B"

kafka-down:
	tests/kafka/kafka.sh down --dir $(KAFKA_DEV)

unit: $(UNIT_BIN)

unit-san:
	$(MAKE) SANITIZE=1 unit

# The whole suite: unit tests, the same under ASan+UBSan, then black-box
# tests of the real binary over HTTP and interop with independent clients.
test: deps
	$(MAKE) format-check
	$(MAKE) all unit
	$(MAKE) SANITIZE=1 unit
	$(MAKE) fuzz-build
	$(MAKE) check

# The runner alone (a separate make, so that PYTHON is looked up after
# `deps` installed the Python packages).
check:
	@[ -n "$(PYTHON)" ] || { echo "no python3 imports cryptography, confluent_kafka, avro and psycopg2: run make deps"; exit 1; }
	FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) tests/run.sh "$(PYTHON)"

clean:
	rm -rf build

# ---- Fuzzing (tests/fuzz/) ----
# libFuzzer harnesses for every decoder, built with clang, coverage, ASan
# and UBSan into build/fuzz (apart from build/ and build/san). Only the
# engine and worker sources are needed; the archive lets the linker take
# just the objects a harness uses. `make fuzz` runs each target for
# FUZZ_SECONDS, one after the other; `make test` runs each for
# FUZZ_SMOKE_SECONDS so that a broken harness fails the suite.
FUZZ_CC       ?= clang
FUZZ_BUILD     = build/fuzz
FUZZ_SECONDS  ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TARGETS   = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS    = $(CFLAGS_BASE) -O1 $(FUZZ_SAN) $(PKG_CFLAGS)
FUZZ_LIB_OBJ   = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(ENGINE_SRC) $(WORKER_SRC)) \
                 $(FUZZ_BUILD)/obj/gen/schemas.o
FUZZ_BIN       = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
# True when clang can link a libFuzzer binary (libclang-rt-14-dev is there).
FUZZ_RUNTIME_OK = command -v $(FUZZ_CC) >/dev/null \
    && [ -e "$$($(FUZZ_CC) -print-file-name=libclang_rt.fuzzer-$$(uname -m).a)" ]

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/obj/gen/schemas.o: $(BUILD)/gen/schemas.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libopenexec.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libopenexec.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libopenexec.a $(PKG_LIBS)

-include $(FUZZ_LIB_OBJ:.o=.d)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	tests/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# Every C file of the project; `make test` refuses unformatted code.
FORMAT_SRC = $(wildcard engine/*.[ch] ledger/*.[ch] admin-http/*.[ch] cmd/*.[ch] worker/*.[ch] tests/*.h \
                        tests/engine/*.c tests/worker/*.c tests/fuzz/*.[ch])

format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@clang-format --dry-run -Werror $(FORMAT_SRC) 2>&1 | head -n 20; \
	 clang-format --dry-run -Werror $(FORMAT_SRC) >/dev/null 2>&1 \
	 || { echo "unformatted C code: run make format"; exit 1; }

# Benchmarks (not part of `make test`): see bench/run.sh.
bench: all
	bench/all.sh
