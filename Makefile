# AMDIM in C: a tensor engine with autograd, CPU (OpenBLAS + OpenMP) and CUDA (cuBLAS) paths.
#   make            build train, eval and the test runner (CUDA path when nvcc is found; GPU=0 forces CPU-only)
#   make test       build and run every test
#   make test-asan  the same tests under AddressSanitizer + UndefinedBehaviorSanitizer (CPU build)
#   make bench      benchmarks (never fail the build; a GPU section where a GPU is present)
#   make test-gpu   the GPU tests and a CLI run on the GPU, failing without one (REQUIRE_GPU=1)
#   make test-tools the Python tools: checkpoints in PyTorch, loss-curve and t-SNE pictures (skip without packages)
#   make deps       install the system packages (as root) or print the command
#   PORTABLE=1      (with any target) a binary for any x86-64 CPU instead of this machine's (-march=native)

CC      ?= gcc
NVCC    ?= nvcc
BUILD   ?= build
SAN     ?=
# Our own loops are built for this machine's CPU (AVX-512 where it has it); PORTABLE=1 builds a binary for any
# x86-64 CPU from about 2009 on. -std=c11 keeps a*b+c unfused (-ffp-contract=off), so both give the same sums.
# -fno-math-errno: nothing reads errno after sqrtf, so loops calling it can vectorise (the values are the same;
# unlike -ffast-math it keeps NaN and infinity checks working).
ARCH    = $(if $(filter 1,$(PORTABLE)),-march=x86-64-v2,-march=native)
CFLAGS_BASE = -std=c11 -O3 $(ARCH) -fno-math-errno -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
              -D_GNU_SOURCE -fopenmp -I$(OPENBLAS_INC) $(SAN)
# OpenBLAS built on OpenMP: its GEMM threads are the same pool as our OpenMP loops, so the two never fight over
# the cores (the pthread build's spinning threads and libgomp's spinning threads halve the speed on 2 cores).
OPENBLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
OPENBLAS_INC ?= /usr/include/x86_64-linux-gnu/openblas-openmp
LDLIBS  = -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -lturbojpeg -lz -lm -lpthread

# ---- CUDA detection: GPU=1 needs nvcc, GPU=0 forces the CPU build, unset = auto ----
NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
ifeq ($(GPU),)
  GPU := $(if $(NVCC_PATH),1,0)
endif
ifeq ($(GPU),1)
  CUDA_HOME ?= $(abspath $(dir $(NVCC_PATH))/..)
  CUDA_ARCH ?= 80 90
  NVCC_GENCODE = $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a))
  NVCC_WERROR ?= -Werror all-warnings
  # -lineinfo: compute-sanitizer and ncu name the .cu line of a fault (no effect on the generated code)
  NVCCFLAGS = -O3 -std=c++17 -lineinfo $(NVCC_GENCODE) -DUSE_CUDA -Xcompiler -Wall,-Wextra,-Wno-unused-parameter $(NVCC_WERROR)
  CFLAGS_BASE += -DUSE_CUDA -I$(CUDA_HOME)/include
  LDLIBS += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
  CUDA_SRC = $(wildcard cuda/*.cu)
endif
# ---- MPI detection: MPI=1 needs mpicc (Open MPI), MPI=0 builds a single-process engine, unset = auto ----
# With MPI and the CUDA build, GPU collectives go through NCCL (shipped with the CUDA toolkit).
MPICC_PATH := $(shell command -v mpicc 2>/dev/null)
ifeq ($(MPI),)
  MPI := $(if $(MPICC_PATH),1,0)
endif
ifeq ($(MPI),1)
  CFLAGS_BASE += -DUSE_MPI $(shell mpicc --showme:compile)
  LDLIBS += $(shell mpicc --showme:link)
  ifeq ($(GPU),1)
    CFLAGS_BASE += -DUSE_NCCL
    LDLIBS += -lnccl
  endif
endif
CFLAGS ?= $(CFLAGS_BASE)

CORE_SRC  = $(wildcard base/*.c tensor/*.c comm/*.c autograd/*.c ops/*.c)
MODEL_SRC = $(wildcard model/*.c)
DATA_SRC  = $(wildcard data/*.c)
IO_SRC    = $(wildcard io/*.c)
TEST_SRC  = $(wildcard test/*.c)
LIB_SRC   = $(CORE_SRC) $(IO_SRC) $(MODEL_SRC) $(DATA_SRC)

LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/%.o)
PROGRAMS = $(BUILD)/train $(BUILD)/eval $(BUILD)/test_runner

.PHONY: all test test-asan test-gpu test-tools test-interop bench deps clean lines demo soak
all: deps-check $(PROGRAMS)
	@echo "built: $(PROGRAMS) (CUDA: $(if $(filter 1,$(GPU)),yes,no), MPI: $(if $(filter 1,$(MPI)),yes,no))"

# objects are rebuilt when the flags change (GPU=0 after GPU=1, SAN, CUDA_ARCH, ...): the stamp holds the last flags
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD); echo '$(CC) $(CFLAGS) GPU=$(GPU) $(NVCCFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(CFLAGS) GPU=$(GPU) $(NVCCFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/train: $(BUILD)/train.o $(BUILD)/driver.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/eval: $(BUILD)/eval.o $(BUILD)/driver.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/test_runner: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
# compiled and linked in one go: build/bench is the program, so no build/bench/ folder can hold its object
$(BUILD)/bench: bench/bench.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -MMD -MP -MF $(BUILD)/bench.d $^ -o $@ $(LDLIBS)

test: all
	$(BUILD)/test_runner
	bash test/cli_test.sh $(BUILD)
	bash test/mpi_test.sh $(BUILD)

# the Python tools (tools/README.md): each test skips, saying so, where Debian's torch / matplotlib / sklearn are missing
test-interop: $(BUILD)/train $(BUILD)/eval
	bash test/interop_test.sh $(BUILD)
test-tools: test-interop
	bash test/tools_test.sh $(BUILD)

# sanitizers on the CPU build (ASan does not mix with the CUDA runtime)
test-asan:
	$(MAKE) BUILD=build/asan GPU=0 MPI=0 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" build/asan/test_runner
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/test_runner
	$(MAKE) BUILD=build/asan GPU=0 MPI=0 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" build/asan/train build/asan/eval
	ASAN_OPTIONS=detect_leaks=1 bash test/cli_test.sh build/asan

# train + resume + eval cycles under ASan (test/soak.sh): no sanitizer report, peak memory flat
soak:
	bash test/soak.sh

# where a GPU must be present: a skipped GPU test is a failure (REQUIRE_GPU=1), pool blocks are NaN-poisoned, then
# train / eval --device cuda end to end on a generated dataset (test/gpu_cli_test.sh)
test-gpu: all
	POISON_POOL=1 REQUIRE_GPU=1 $(BUILD)/test_runner gpu golden
	bash test/gpu_cli_test.sh $(BUILD)

bench: all $(BUILD)/bench
	bash bench/run.sh $(BUILD)

# ---- system packages ----
PACKAGES = libopenblas-openmp-dev zlib1g-dev libstb-dev libturbojpeg0-dev
deps-check:
	@missing=""; \
	[ -f $(OPENBLAS_INC)/cblas.h ] && [ -f $(OPENBLAS_DIR)/libopenblas.so ] || missing="$$missing libopenblas-openmp-dev"; \
	[ -f /usr/include/zlib.h ] || missing="$$missing zlib1g-dev"; \
	[ -f /usr/include/stb/stb_image.h ] || missing="$$missing libstb-dev"; \
	[ -f /usr/include/turbojpeg.h ] || missing="$$missing libturbojpeg0-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing packages:$$missing -- run: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi
deps: deps-check

lines:
	@for d in base tensor autograd ops cuda io model data test tools bench; do \
	  printf "%-9s %6s\n" $$d "$$(cat $$d/*.[ch] $$d/*.cu $$d/*.cuh $$d/*.py $$d/*.sh 2>/dev/null | wc -l)"; done; \
	  printf "%-9s %6s\n" drivers "$$(cat train.c eval.c 2>/dev/null | wc -l)"

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# the main job: short AMDIM training on Fashion-MNIST, then the probes (see README)
demo:
	bash tools/demo.sh

# ---- fuzzing (libFuzzer; clang with libclang_rt.fuzzer; see fuzz/README.md) ----
#   make fuzz          builds build/fuzz/<target> and runs each for FUZZ_SECONDS on a copy of its corpus; fails on
#                      any crash, leak, UB report, timeout or out-of-memory (the input is left in build/fuzz/<target>-*)
#   make fuzz-regress  replays every file of fuzz/regressions/ and fuzz/corpus/ once through every target
#   make fuzz-corpus   rewrites the seed corpora fuzz/corpus/ (fuzz/make_corpus.c)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = safetensors idx cifar_stl image checkpoint
FUZZ_CFLAGS   = -std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -Wno-unknown-pragmas \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_OPTS     = -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_MAX_LEN_safetensors = 16384
FUZZ_MAX_LEN_idx         = 16384
FUZZ_MAX_LEN_cifar_stl   = 65536
FUZZ_MAX_LEN_image       = 32768
FUZZ_MAX_LEN_checkpoint  = 262144
FUZZ_SRC_safetensors = io/safetensors.c base/base.c
FUZZ_SRC_DATA        = data/datasets.c data/augment.c data/stb_impl.c base/base.c base/rng.c
FUZZ_SRC_idx         = $(FUZZ_SRC_DATA)
FUZZ_SRC_cifar_stl   = $(FUZZ_SRC_DATA)
FUZZ_SRC_image       = $(FUZZ_SRC_DATA)
# checkpoints: the model and the engine under it (CPU, one process), with OpenBLAS
FUZZ_SRC_checkpoint  = model/checkpoint.c model/amdim.c model/objectives.c $(wildcard ops/*.c autograd/*.c tensor/*.c \
                       comm/*.c) io/safetensors.c base/base.c base/rng.c
FUZZ_LIBS_checkpoint = -I$(OPENBLAS_INC) -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
FUZZ_BINS = $(FUZZ_TARGETS:%=build/fuzz/%)
FUZZ_FILES = $(wildcard fuzz/regressions/*/* fuzz/corpus/*/*)
.PHONY: fuzz fuzz-build fuzz-regress fuzz-corpus
.SECONDEXPANSION:
build/fuzz/%: fuzz/%.c $$(FUZZ_SRC_$$*) $(wildcard data/*.h io/*.h base/*.h)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_LIBS_$*) $< $(FUZZ_SRC_$*) -o $@ -lturbojpeg -lz -lm
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf build/fuzz/corpus-$$t && mkdir -p build/fuzz/corpus-$$t && cp fuzz/corpus/$$t/* build/fuzz/corpus-$$t/ && \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s" && \
	  build/fuzz/$$t $(FUZZ_OPTS) -max_len=$(FUZZ_MAX_LEN_$$t) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/corpus-$$t 2> build/fuzz/$$t.log || \
	    { tail -40 build/fuzz/$$t.log; echo "fuzz $$t FAILED (log: build/fuzz/$$t.log)"; exit 1; }; \
	  grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' build/fuzz/$$t.log | tail -1; \
	done
fuzz-regress: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  build/fuzz/$$t -timeout=10 -rss_limit_mb=2048 $(FUZZ_FILES) > build/fuzz/$$t-regress.log 2>&1 || \
	    { tail -40 build/fuzz/$$t-regress.log; echo "fuzz-regress $$t FAILED"; exit 1; }; \
	  echo "fuzz-regress $$t: $(words $(FUZZ_FILES)) files, no report"; \
	done
fuzz-corpus:
	@mkdir -p build/fuzz
	$(CC) -std=c11 -O1 -D_GNU_SOURCE -Wall fuzz/make_corpus.c io/safetensors.c base/base.c -o build/fuzz/make_corpus \
	  -lturbojpeg -lz -lm
	rm -rf fuzz/corpus/safetensors fuzz/corpus/idx fuzz/corpus/cifar_stl fuzz/corpus/image   # checkpoint/ is kept
	build/fuzz/make_corpus fuzz/corpus
