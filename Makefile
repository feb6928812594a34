# mdlab — build, boot and test.  `make` builds; `make run` boots to the monitor;
# `make test` runs every self-test.  See README.md.

# The host GCC serves as a freestanding cross compiler (Debian ships no x86_64-elf GCC).
# Set CROSS=x86_64-elf- to use a dedicated toolchain instead.
CROSS   ?=
CC      := $(CROSS)gcc
LD      := $(CROSS)ld
OBJCOPY := $(CROSS)objcopy
NASM    ?= nasm
PYTHON  ?= python3

BUILD   := build
KERNEL  := $(BUILD)/kernel.elf
LOADER  := $(BUILD)/boot/BOOTX64.EFI
ESP     := $(BUILD)/esp.img

# Extra QEMU options for run, test and debug (monitor, -d int, ...).
QEMU_EXTRA ?=
# Test selection (glob over suite.case) and out-of-tree test files.
T ?= *
EXTRA_TESTS ?=
# key=value words appended to the test boots' kernel command line (fuzz_seed=S, ...).
KERNEL_ARGS ?=
KVM ?= 0
# vCPUs of the QEMU machine for run, test, debug and map (make bench always boots one).
SMP ?= 4
export MDLAB_SMP := $(SMP)
# The disk run and test attach as virtio-blk (scripts/qemu.py disk_options): DISK=path takes
# the user's own raw image, else build/disk.img, made empty (64 MiB, sparse) when missing.
DISK ?=
DISK_IMG := $(or $(DISK),$(BUILD)/disk.img)
# PAGEFILE=1: the kernel may page to the disk's sectors 98304- (48-64 MiB; kernel command line
# `pagefile=1`, README "Devices").  On for build/disk.img; a user's DISK=path only when asked.
PAGEFILE ?= $(if $(DISK),0,1)
PAGEFILE_ARG := $(if $(filter 1,$(PAGEFILE)),pagefile=1)
# JUNIT=path also writes the results as JUnit XML; UNIT_LINES=1 lists each harness unit test.
JUNIT ?=
UNIT_LINES ?=
# Death tests: restore copies of one booted machine (restore), or boot each one (boot).
DEATH_MODE ?= restore

.DEFAULT_GOAL := all

# ---------------------------------------------------------------- kernel
KERNEL_DIRS := kernel kernel/io kernel/intr kernel/pci kernel/smp kernel/virtio kernel/lab mm tests tests/lib tests/bench
KERNEL_C    := $(sort $(foreach d,$(KERNEL_DIRS),$(wildcard $(d)/*.c)))
KERNEL_ASM  := $(sort $(foreach d,$(KERNEL_DIRS),$(wildcard $(d)/*.asm)))
EXTRA_OBJ   := $(patsubst %,$(BUILD)/extra/%.o,$(abspath $(EXTRA_TESTS)))
KERNEL_OBJ  := $(patsubst %,$(BUILD)/%.o,$(KERNEL_C) $(KERNEL_ASM))
# WDK-style drivers (drivers/NAME.c): rewritten for SEH like the *_driver.c files (below), each
# DriverEntry renamed and registered under NAME by kernel/io/driver.h, so the source stays the
# WDK's.  WDK code
# gives its file-local routines external linkage without prototypes (MSVC does not warn), so
# that one warning is off for drivers.
WDM_DRIVER_C   := $(sort $(wildcard drivers/*.c))
WDM_DRIVER_OBJ := $(patsubst %,$(BUILD)/%.o,$(WDM_DRIVER_C))
KERNEL_OBJ  += $(WDM_DRIVER_OBJ)
# Driver sources are written as for MSVC (__try/__except/__finally, try/except/finally):
# each is preprocessed with MDLAB_SEH_REWRITER (kernel/seh.h then leaves the keywords alone),
# passed through scripts/seh_rewrite.py, and the result compiled (README, "Structured
# exception handling").  The *_driver.c files of the tree and every EXTRA_TESTS file.
DRIVER_C    := $(sort $(foreach d,$(KERNEL_DIRS),$(wildcard $(d)/*_driver.c)))
DRIVER_OBJ  := $(patsubst %,$(BUILD)/%.o,$(DRIVER_C))

WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
        -Wpointer-arith -Wno-multichar
KCFLAGS := -std=gnu11 -O2 -g $(WARN) \
        -ffreestanding -fno-builtin -nostdinc -isystem $(shell $(CC) -print-file-name=include) \
        -fno-stack-protector -fno-pic -fno-pie -fno-common -fno-strict-aliasing -fshort-wchar \
        -mno-red-zone -mcmodel=kernel -mgeneral-regs-only -mno-mmx -mno-sse -mno-sse2 \
        -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -fno-optimize-sibling-calls \
        -Iinclude -I. -MMD -MP
KLDFLAGS := -nostdlib -static -no-pie -z max-page-size=0x1000 -z noexecstack \
        --no-dynamic-linker -T linker.ld
NASMFLAGS := -f elf64 -g -F dwarf -i $(BUILD)/user/ -MD

# ---------------------------------------------------------------- user programs
# Static ELF programs for ring 3, embedded in the kernel by kernel/userbin.asm.  The agent
# and the fuzzer use the native runtime (user/lib.c); the others are Win32-style programs written against
# user/include/ (windows.h, stdio.h) and linked with user/win32.c.
USER_PROGS := agent fuzz
WIN32_PROGS := hello mdlsample ioattack
USER_ELF   := $(patsubst %,$(BUILD)/user/%.elf,$(USER_PROGS))
WIN32_ELF  := $(patsubst %,$(BUILD)/user/%.elf,$(WIN32_PROGS))
USER_LIB   := $(BUILD)/user/lib.c.o $(BUILD)/user/entry.asm.o
WIN32_LIB  := $(BUILD)/user/win32.c.o $(BUILD)/user/lib.c.o $(BUILD)/user/entry.asm.o
UCFLAGS := -std=gnu11 -O2 -g $(WARN) \
        -ffreestanding -fno-builtin -nostdinc -isystem $(shell $(CC) -print-file-name=include) \
        -fno-stack-protector -fno-pic -fno-pie -mgeneral-regs-only -fno-omit-frame-pointer -fshort-wchar \
        -Iuser/include -Iinclude -I. -MMD -MP

$(BUILD)/user/%.c.o: user/%.c Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(UCFLAGS) -c $< -o $@

$(BUILD)/user/%.asm.o: user/%.asm Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NASM    $<")
	$(Q)$(NASM) -f elf64 -g -F dwarf -MD $(@:.o=.d) $< -o $@

# A static pattern rule: its objects are named targets, not intermediate files make would
# delete after the first build (and then remake on the second).
$(USER_ELF): $(BUILD)/user/%.elf: $(BUILD)/user/%.c.o $(USER_LIB) user/linker.ld
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(LD) -nostdlib -static -no-pie -z max-page-size=0x1000 -z noexecstack -T user/linker.ld \
		-o $@ $< $(USER_LIB)

$(WIN32_ELF): $(BUILD)/user/%.elf: $(BUILD)/user/%.c.o $(WIN32_LIB) user/linker.ld
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(LD) -nostdlib -static -no-pie -z max-page-size=0x1000 -z noexecstack -T user/linker.ld \
		-e win32_start -o $@ $< $(WIN32_LIB)

# 32-bit programs (ELF32, Intel 80386) for IA-32e compatibility mode: the host GCC with -m32,
# freestanding, no library but their own runtime (user/entry32.asm).
COMPAT32_PROGS := compat32 fuzz32
COMPAT32_ELF := $(patsubst %,$(BUILD)/user/%.elf,$(COMPAT32_PROGS))
UCFLAGS32 := $(filter-out -mgeneral-regs-only,$(UCFLAGS)) -m32 -mno-mmx -mno-sse -mno-sse2 -mno-80387

$(BUILD)/user/%.c32.o: user/%.c Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC32    $<")
	$(Q)$(CC) $(UCFLAGS32) -c $< -o $@

$(BUILD)/user/%.asm32.o: user/%.asm Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NASM32  $<")
	$(Q)$(NASM) -f elf32 -g -F dwarf -MD $(@:.o=.d) $< -o $@

$(COMPAT32_ELF): $(BUILD)/user/%.elf: $(BUILD)/user/%.c32.o $(BUILD)/user/entry32.asm32.o user/linker32.ld
	@$(if $(Q),echo "  LD32    $@")
	$(Q)$(LD) -m elf_i386 -nostdlib -static -no-pie -z max-page-size=0x1000 -z noexecstack -T user/linker32.ld \
		-o $@ $< $(BUILD)/user/entry32.asm32.o

$(BUILD)/kernel/userbin.asm.o: $(USER_ELF) $(WIN32_ELF) $(COMPAT32_ELF)

# ---------------------------------------------------------------- loader (GNU-EFI)
EFI_INC  := /usr/include/efi
EFI_LIB  := /usr/lib
EFI_CRT0 := $(EFI_LIB)/crt0-efi-x86_64.o
EFI_LDS  := $(EFI_LIB)/elf_x86_64_efi.lds
LOADER_C := $(wildcard boot/*.c)
LOADER_OBJ := $(patsubst %,$(BUILD)/%.o,$(LOADER_C))
ECFLAGS := -std=gnu11 -O2 $(WARN) -Wno-missing-prototypes -Wno-strict-prototypes \
        -ffreestanding -fpic -fshort-wchar -fno-stack-protector -fno-strict-aliasing \
        -mno-red-zone -maccumulate-outgoing-args -DGNU_EFI_USE_MS_ABI \
        -I$(EFI_INC) -I$(EFI_INC)/x86_64 -Iinclude -MMD -MP

.PHONY: all deps run test bench bench-linux bench-baseline debug clean check-harness check-loader
# The empty recipe: an up-to-date tree builds in silence (not "Nothing to be done").
all: $(KERNEL) $(LOADER) $(ESP)
	@:

deps:
	@bash scripts/deps.sh

# Flag or selection changes rebuild: the Makefile is a prerequisite of every object.
# `make V=1` shows the full commands.
Q := $(if $(V),,@)

$(BUILD)/%.c.o: %.c Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(KCFLAGS) -c $< -o $@

$(BUILD)/%.asm.o: %.asm Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NASM    $<")
	$(Q)$(NASM) $(NASMFLAGS) $(@:.o=.d) $< -o $@

# Preprocess, rewrite, compile: $(1) the source, $(2) the object.  The intermediate files
# (.pp.i, .seh.i) sit next to the object; the dependencies are the preprocessor's.
# -Wno-clobbered: the rewriter makes volatile every local that a __try block or filter assigns
# (the values setjmp's rule is about); GCC also names locals that keep their value from the
# setjmp to the longjmp, which are safe.
SEH_CFLAGS := $(filter-out -MMD -MP,$(KCFLAGS)) -Wno-clobbered
define seh_compile
	$(Q)$(CC) $(KCFLAGS) $(3) -DMDLAB_SEH_REWRITER -E -MF $(2:.o=.d) -MT $(2) $(1) -o $(2:.o=.pp.i)
	$(Q)$(PYTHON) scripts/seh_rewrite.py $(2:.o=.pp.i) $(2:.o=.seh.i)
	$(Q)$(CC) $(SEH_CFLAGS) $(4) -c $(2:.o=.seh.i) -o $(2)
endef

# A driver image: $(3) its preprocessor flags (the forced kernel/io/driver.h registers its
# renamed DriverEntry), $(4) the compiler's.
$(WDM_DRIVER_OBJ): $(BUILD)/drivers/%.c.o: drivers/%.c scripts/seh_rewrite.py Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC SEH  $<")
	$(call seh_compile,$<,$@,-include kernel/io/driver.h -DDriverEntry=$*_DriverEntry -DMDLAB_DRIVER_NAME=$*,-Wno-missing-prototypes)

$(DRIVER_OBJ): $(BUILD)/%.c.o: %.c scripts/seh_rewrite.py Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC SEH  $<")
	$(call seh_compile,$<,$@)

$(BUILD)/extra/%.o: % scripts/seh_rewrite.py Makefile
	@mkdir -p $(dir $@)
	$(call seh_compile,$<,$@)

# The set of extra test files is part of the kernel's identity: relink when it changes.  The
# stamp records the set; it is rewritten, as the Makefile is read, only when the set differs,
# so a build with the same set has nothing to do (no FORCE rule to run every time).
EXTRA_STAMP := $(BUILD)/extra-tests.stamp
EXTRA_SET := $(abspath $(EXTRA_TESTS))
ifneq ($(if $(wildcard $(EXTRA_STAMP)),$(file <$(EXTRA_STAMP)),none),$(EXTRA_SET))
$(shell mkdir -p $(BUILD))
$(file >$(EXTRA_STAMP),$(EXTRA_SET))
endif

$(KERNEL): $(KERNEL_OBJ) $(EXTRA_OBJ) linker.ld $(EXTRA_STAMP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(LD) $(KLDFLAGS) -o $@ $(KERNEL_OBJ) $(EXTRA_OBJ)

$(BUILD)/boot/%.c.o: boot/%.c Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ECFLAGS) -c $< -o $@

# Firmware calls are direct ms_abi calls (GNU_EFI_USE_MS_ABI); libefi, built for the
# uefi_call_wrapper convention, is not linked.  libgnuefi supplies crt0's _relocate.
$(BUILD)/boot/loader.so: $(LOADER_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(LD) -nostdlib -znocombreloc -shared -Bsymbolic -T $(EFI_LDS) $(EFI_CRT0) $^ \
		-o $@ -L$(EFI_LIB) -lgnuefi

$(LOADER): $(BUILD)/boot/loader.so
	@$(if $(Q),echo "  OBJCOPY $@")
	$(Q)$(OBJCOPY) -j .text -j .sdata -j .data -j .dynamic -j .dynsym -j .rel -j .rela \
		-j .rel.* -j .rela.* -j .reloc --target efi-app-x86_64 --subsystem=10 $< $@

# The ESP: a real FAT image built with mtools.  The command line the kernel boots with
# by default is the monitor's; the harness writes its own copy per boot.
$(ESP): $(KERNEL) $(LOADER) scripts/mkesp.sh
	@$(if $(Q),echo "  ESP     $@")
	$(Q)bash scripts/mkesp.sh $@ $(LOADER) $(KERNEL) "mode=monitor"

# run, test and debug install what is missing first, so a fresh machine needs no other step.
# CMD and BOOT reach run.py through the environment, unexpanded ($(value)): neither make nor
# the shell interprets a $ or a backtick in them.
run test: export MDLAB_DISK := $(abspath $(DISK_IMG))
run test: $(if $(DISK),,$(BUILD)/disk.img)
$(BUILD)/disk.img:
	@mkdir -p $(@D)
	$(Q)truncate -s 64M $@

run: export MDLAB_RUN_CMD := $(value CMD)
run: export MDLAB_RUN_BOOT := $(value BOOT)
run:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(PYTHON) scripts/run.py --esp $(ESP) --kvm $(KVM) --qemu-extra "$(QEMU_EXTRA)" \
		--cmd-env MDLAB_RUN_CMD --boot-env MDLAB_RUN_BOOT $(if $(PAGEFILE_ARG),--pagefile)

# A test run starts from an empty build/disk.img, so every `# disk-check:` reads what this
# run wrote, never an earlier one's sectors; a DISK=path of the user's is never emptied.
test:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	$(if $(DISK),,$(Q)truncate -s 0 $(DISK_IMG) && truncate -s 64M $(DISK_IMG))
	@$(PYTHON) scripts/harness.py --esp $(ESP) --kernel $(KERNEL) --kvm $(KVM) \
		--qemu-extra "$(QEMU_EXTRA)" --tests '$(T)' --jobs $(shell nproc) --death-mode $(DEATH_MODE) \
		--cmdline-extra "$(strip $(PAGEFILE_ARG) $(KERNEL_ARGS))" $(if $(JUNIT),--junit '$(JUNIT)') \
		$(if $(filter 1,$(UNIT_LINES)),--unit-lines)

# Deterministic performance figures (guest instructions under -icount): build/bench.json.
bench:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(PYTHON) scripts/bench.py --esp $(ESP) --kvm $(KVM) --qemu-extra "$(QEMU_EXTRA)"

# The peer benchmark (README "make bench-linux"): Debian's Linux in the same QEMU and machine,
# its mapping paths timed by tests/bench/linux/, beside build/bench.json (make bench first when
# there is none).  Optional: it installs about 100 MB of Debian packages.  build/bench-linux.json.
bench-linux:
	@bash scripts/deps.sh
	@bash scripts/deps.sh tests/bench/linux/packages.txt
	@test -f $(BUILD)/bench.json || { echo "bench-linux: no $(BUILD)/bench.json: make bench first, for mdlab's figures"; \
		$(MAKE) --no-print-directory bench || true; }
	@$(PYTHON) scripts/bench_linux.py --build-dir $(BUILD) --qemu-extra "$(QEMU_EXTRA)"

# Rewrite the committed figures (tests/bench/baseline.json) from a run: for a change that is
# slower on purpose; its commit says why.
bench-baseline:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(PYTHON) scripts/bench.py --esp $(ESP) --qemu-extra "$(QEMU_EXTRA)" --update-baseline

# The harness's own unit tests on canned logs (make test runs them too).
check-harness:
	@$(PYTHON) scripts/test_harness.py
	@$(PYTHON) scripts/test_bench_linux.py

# The UEFI loader's tests: broken kernel ELFs it must refuse with its one-line diagnosis, and
# the real kernel booted at 512 MiB and 2 GiB and with odd command-line files (70-80 s).
check-loader:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@bash scripts/test-loader.sh $(KERNEL) $(LOADER)

debug:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@KVM=$(KVM) bash scripts/debug.sh $(ESP) $(KERNEL) "$(QEMU_EXTRA)"

# A picture of the address spaces: boot, run the monitor's mapdump, draw build/map.svg (and
# build/map.png when rsvg-convert or ImageMagick can convert it).
map:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(PYTHON) scripts/map.py --esp $(ESP) --kvm $(KVM) --qemu-extra "$(QEMU_EXTRA)" --out $(BUILD)/map.svg

# KVM=1: check first that this machine's KVM can run `-cpu host` (scripts/kvmcheck.py), so
# that a host where it cannot gets one clear line instead of QEMU's abort.
kvm-check:
ifeq ($(KVM),1)
	@bash scripts/deps.sh
	@$(PYTHON) scripts/kvmcheck.py
endif
run test bench debug map: kvm-check
.PHONY: map kvm-check

clean:
	rm -rf $(BUILD)

-include $(KERNEL_OBJ:.o=.d) $(EXTRA_OBJ:.o=.d) $(LOADER_OBJ:.o=.d) $(wildcard $(BUILD)/user/*.d)
