"""mdlab_gdb.py — gdb commands that read mdlab's memory-manager state out of a stopped guest.

scripts/gdbinit sources this file (`make debug`).  The commands read guest memory through
QEMU's gdb stub; nothing runs in the guest:

    mdlab-pte [-k] VA          walk the four levels for VA: every entry, its bits, the leaf's
                               PAT slot and the type IA32_PAT gives it, the frame's PFN entry
    mdlab-pfn N                the PFN database entry of frame N and its direct-map alias
    mdlab-mdl ADDR             an MDL: fields, flags by name, PFN array, its system mapping
    mdlab-pat                  IA32_PAT slot by slot
    mdlab-ptdump [-k] [START [END]]
                               the page tables as merged ranges, like the monitor's ptdump
    mdlab-ps                   the live processes
    mdlab-sysptes              the system-PTE space's counters
    mdlab-pool                 pool usage and live allocations by tag
    mdlab-objects              the monitor's live objects (alloc, build, map, spawn)

Arguments are gdb expressions (`mdlab-pte $rax`, `mdlab-mdl Mdl`, `mdlab-pfn 0x1fee2`).
The tables walked are CR3's — what the CPU translates with now, a process's when one is
attached — or the kernel's own (kernel_root) with -k.

Where the data comes from:
  - Page tables are read at physical addresses through the kernel's direct map
    (KVA_DIRECT_MAP_BASE + pa, mm/layout.h), which maps all RAM once the kernel runs on its
    own tables (the loader's tables have one at the same place).  Where that read fails —
    in the firmware, before the loader's tables — QEMU's monitor (`monitor xp`) reads
    physical memory instead.
  - IA32_PAT: QEMU's gdb stub reads no MSRs, so the value is the kernel's own copy,
    `pat_current` in mm/pat.c (read back from the MSR after every write).  If that symbol
    cannot be read, the documented layout is used, and every output says so.
  - The PFN database: the statics `db` and `db_limit` of mm/pfn.c, read by name; state and
    owner names from the kernel's own tables (`state_names`, `owner_names`).
  - The layout's constants are read from mm/layout.h (cheader.py, next to this script), so
    they cannot drift from the kernel's.
"""

import os
import re
import struct
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cheader  # noqa: E402

PAGE_SIZE = 4096
ADDR_MASK = 0x000FFFFFFFFFF000          # bits 51..12: the next table or the 4 KiB frame
LEAF_MASK = {1: ADDR_MASK, 2: 0x000FFFFFFFE00000, 3: 0x000FFFFFC0000000}
LEAF_SIZE = {1: 1 << 12, 2: 1 << 21, 3: 1 << 30}
ENTRY_NAMES = {4: "PML4E", 3: "PDPTE", 2: "PDE", 1: "PTE"}
TABLE_NAMES = {4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}
LEAF_NAMES = {1: "4K", 2: "2M", 3: "1G"}

# Entry bits (SDM Vol. 3, 4.5): bit 7 is PS above level 1 and PAT in a 4 KiB PTE; a 2 MiB or
# 1 GiB leaf keeps its PAT bit at bit 12.
P, RW, US, PWT, PCD, A, D, PS, G = (1 << b for b in range(9))
PAT_4K, PAT_LARGE, NX = 1 << 7, 1 << 12, 1 << 63

# IA32_PAT encodings (SDM Vol. 3, 13.12.2); 2 and 3 are reserved.
PAT_ENCODINGS = {0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB", 7: "UC-"}
# README "The PAT": mdlab's layout, WB WT UC- UC WB WC WP UC; the fallback when pat_current
# can't be read.  And the power-on value, which pat_current holds until pat_init runs.
PAT_DOCUMENTED = 0x0005010600070406
PAT_POWER_ON = 0x0007040600070406

MDL_FLAGS = [
    (0x0001, "MAPPED_TO_SYSTEM_VA"), (0x0002, "PAGES_LOCKED"), (0x0004, "SOURCE_IS_NONPAGED_POOL"),
    (0x0008, "ALLOCATED_FIXED_SIZE"), (0x0010, "PARTIAL"), (0x0020, "PARTIAL_HAS_BEEN_MAPPED"),
    (0x0040, "IO_PAGE_READ"), (0x0080, "WRITE_OPERATION"), (0x0100, "PARENT_MAPPED_SYSTEM_VA"),
    (0x0200, "FREE_EXTRA_PTES"), (0x0400, "DESCRIBES_AWE"), (0x0800, "IO_SPACE"),
    (0x1000, "NETWORK_HEADER"), (0x2000, "MAPPING_CAN_FAIL"), (0x4000, "ALLOCATED_MUST_SUCCEED"),
    (0x8000, "INTERNAL"),
]
MDL_HEADER = 0x30
MAX_SHOWN = 32


class MdlabError(Exception):
    """A reason a command cannot answer, printed as it stands."""


# ------------------------------------------------------------------------------ the layout

LAYOUT = cheader.read_repo_header("mm/layout.h")
DIRECT_MAP = LAYOUT["KVA_DIRECT_MAP_BASE"]
PML4_SLOT = 1 << 39
# (first, end, name) of mm/layout.h's regions, as ptdump_region_name names them.
REGIONS = [
    (0, LAYOUT["USER_VA_END"], "user"),
    (LAYOUT["KVA_DIRECT_MAP_BASE"], LAYOUT["KVA_DIRECT_MAP_END"], "direct map"),
    (LAYOUT["KVA_SYSPTE_BASE"], LAYOUT["KVA_SYSPTE_END"], "system PTEs"),
    (LAYOUT["KVA_POOL_BASE"], LAYOUT["KVA_POOL_END"], "pool"),
    (LAYOUT["KVA_STACKS_BASE"], LAYOUT["KVA_STACKS_END"], "stacks"),
    (LAYOUT["KVA_TEST_BASE"], LAYOUT["KVA_TEST_END"], "test scratch"),
    (LAYOUT["KVA_DEVICE_BASE"], LAYOUT["KVA_DEVICE_END"], "device registers"),
    (LAYOUT["KVA_UNMAPPED_HOLE"], LAYOUT["KVA_UNMAPPED_HOLE"] + PML4_SLOT, "never-mapped hole!"),
]


def _symbol_address(name):
    try:
        return int(gdb.parse_and_eval("(unsigned long)&" + name))
    except gdb.error:
        return None


_sections = None   # the kernel image's sections, looked up once per command


def kernel_sections():
    """[(first, end, name)] of the kernel image's sections, from the linker's symbols."""
    global _sections
    if _sections is None:
        _sections = []
        for lo, hi, name in (("__text_start", "__text_end", "kernel text"),
                             ("__rodata_start", "__rodata_end", "kernel rodata"),
                             ("__data_start", "__kernel_end", "kernel data/bss")):
            first, end = _symbol_address(lo), _symbol_address(hi)
            if first is not None and end is not None:
                # data/bss ends mid-page; its last page is still data/bss (as ptdump says).
                _sections.append((first, (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1), name))
    return _sections


def region_name(va):
    """The mm/layout.h region holding va, with the kernel image's sections by name."""
    for first, end, name in REGIONS + kernel_sections():
        if first <= va < end:
            return name
    if va >= LAYOUT["KVA_KERNEL_IMAGE"]:
        return "kernel image slot"
    return "unassigned"


# ------------------------------------------------------------------------------ guest access

def value_of(expression):
    """A gdb expression (register, symbol, number) as an unsigned 64-bit integer."""
    try:
        v = gdb.parse_and_eval(expression)
    except gdb.error as e:
        raise MdlabError(f"cannot evaluate {expression!r}: {e}")
    if v.type.strip_typedefs().code == gdb.TYPE_CODE_PTR:
        v = v.cast(gdb.lookup_type("unsigned long"))
    return int(v) & 0xFFFFFFFFFFFFFFFF


def read_virt(va, size):
    """Bytes at a virtual address, translated by the CPU's current CR3 (QEMU's stub)."""
    try:
        return bytes(gdb.selected_inferior().read_memory(va, size))
    except gdb.MemoryError as e:
        raise MdlabError(f"cannot read {size} bytes at 0x{va:x}: {e}")


def _read_phys_monitor(pa, size):
    """Physical memory through QEMU's monitor (`xp`): slow, but needs no mapping."""
    words = (size + 7) // 8
    try:
        text = gdb.execute(f"monitor xp /{words}gx 0x{pa:x}", to_string=True)
    except gdb.error as e:
        raise MdlabError(f"cannot read physical 0x{pa:x}: not in the direct map, and QEMU's "
                         f"monitor refused ({e})")
    # One line per row: "0000000000001000: 0x0000000000000000 0x...".
    values = [int(w, 16) for line in text.splitlines() if ":" in line
              for w in re.findall(r"0x([0-9a-fA-F]+)", line.split(":", 1)[1])]
    if len(values) < words:
        raise MdlabError(f"cannot read physical 0x{pa:x}: QEMU's monitor said {text.strip()!r}")
    return struct.pack(f"<{words}Q", *values[:words])[:size]


def read_phys(pa, size):
    """Bytes at a physical address: through the direct map, else QEMU's monitor."""
    try:
        return bytes(gdb.selected_inferior().read_memory(DIRECT_MAP + pa, size))
    except gdb.MemoryError:
        return _read_phys_monitor(pa, size)


def phys_u64(pa):
    return struct.unpack("<Q", read_phys(pa, 8))[0]


def current_cr3():
    """The PML4 the CPU translates with now; MdlabError while paging is off."""
    try:
        cr0 = int(gdb.parse_and_eval("$cr0"))
        cr3 = int(gdb.parse_and_eval("$cr3"))
    except gdb.error as e:
        raise MdlabError(f"cannot read CR0/CR3 ({e}): is gdb connected to QEMU?")
    if not cr0 & (1 << 31):
        raise MdlabError("paging is off (CR0.PG = 0): there are no page tables to walk yet "
                         "(`c` boots to kmain)")
    return cr3 & ADDR_MASK


def kernel_cr3():
    try:
        pml4 = int(gdb.parse_and_eval("kernel_root.pml4"))
    except gdb.error as e:
        raise MdlabError(f"cannot read kernel_root ({e}): are the kernel's symbols loaded?")
    if not pml4:
        raise MdlabError("kernel_root.pml4 is 0: the kernel has not built its tables yet")
    return pml4


def root_from_flag(argv):
    """-k selects the kernel's own tables; otherwise CR3's.  Returns (root, label, argv)."""
    if argv and argv[0] == "-k":
        return kernel_cr3(), "kernel_root", argv[1:]
    return current_cr3(), "CR3", argv


# ------------------------------------------------------------------------------ the PAT

def pat_value():
    """(IA32_PAT, where it came from): the kernel's copy, or the documented layout (the
    source then starts "assumed")."""
    try:
        value = int(gdb.parse_and_eval("'pat.c'::pat_current")) & 0xFFFFFFFFFFFFFFFF
    except gdb.error as e:
        return PAT_DOCUMENTED, (f"assumed: the documented layout, nothing read: pat_current "
                                f"cannot be read ({e}); gdb cannot read MSRs through QEMU")
    if value == PAT_POWER_ON:
        return value, ("pat_current = the power-on value: pat_init has not run yet "
                       "(gdb cannot read the MSR itself through QEMU)")
    return value, "pat_current, the kernel's read-back copy of the MSR (gdb cannot read MSRs)"


def pat_slot_type(pat, slot):
    enc = (pat >> (8 * slot)) & 0xFF
    return enc, PAT_ENCODINGS.get(enc, "reserved")


def leaf_pat_bits(entry, level):
    """(PAT, PCD, PWT) of a leaf entry at `level`."""
    pat = entry & (PAT_4K if level == 1 else PAT_LARGE)
    return int(bool(pat)), int(bool(entry & PCD)), int(bool(entry & PWT))


def leaf_slot(entry, level):
    pat, pcd, pwt = leaf_pat_bits(entry, level)
    return pat << 2 | pcd << 1 | pwt


# ------------------------------------------------------------------------------ walking

def is_leaf(entry, level):
    return level == 1 or (level in (2, 3) and entry & PS)


def describe_entry(entry, level):
    """The entry's bits in the monitor's bracket style (mm/pt.c pt_describe_entry): a fixed
    column per bit, '-' or '---' when clear: P RW|R- U|S PWT PCD A D PAT|PS PAT|-- G NX|X."""
    if not entry & P:
        return "not present"
    leaf = is_leaf(entry, level)
    if not leaf:
        pat = "--"
    elif level == 1:
        pat = "PAT" if entry & PAT_4K else "---"
    else:
        pat = "PS PAT" if entry & PAT_LARGE else "PS ---"
    return " ".join(["P", "RW" if entry & RW else "R-", "U" if entry & US else "S",
                     "PWT" if entry & PWT else "---", "PCD" if entry & PCD else "---",
                     "A" if entry & A else "-", "D" if entry & D else "-", pat,
                     "G" if entry & G else "-", "NX" if entry & NX else "X"])


def walk(root, va):
    """The entries for va from the table at `root` down: a list of (level, entry_pa, entry)
    ending at the leaf or at the first non-present entry."""
    steps = []
    table = root
    for level in (4, 3, 2, 1):
        index = (va >> (12 + 9 * (level - 1))) & 511
        entry_pa = table + 8 * index
        entry = phys_u64(entry_pa)
        steps.append((level, entry_pa, entry))
        if not entry & P or is_leaf(entry, level):
            break
        table = entry & ADDR_MASK
    return steps


def canonical(va):
    return va >> 47 in (0, 0x1FFFF)


def sign_extend(va):
    return va | 0xFFFF000000000000 if va & (1 << 47) else va


# ------------------------------------------------------------------------------ PFN database

def _enum_name(type_name, value, prefix):
    try:
        for field in gdb.lookup_type(type_name).fields():
            if field.enumval == value:
                return field.name[len(prefix):] if field.name.startswith(prefix) else field.name
    except gdb.error:
        pass
    return f"{value}?"


def _kernel_name(table, count_type, value, prefix):
    """A name from one of the kernel's own string tables, or the enum's name."""
    try:
        return gdb.parse_and_eval(f"{table}[{value}]").string()
    except (gdb.error, gdb.MemoryError):
        return _enum_name(count_type, value, prefix)


def memtype_name(value):
    if value == 0xFF:
        return "none"
    return _enum_name("enum memtype", value, "MT_").replace("UCMINUS", "UC-")


class PfnDatabase:
    def __init__(self):
        try:
            self.db = gdb.parse_and_eval("'pfn.c'::db")
            self.limit = int(gdb.parse_and_eval("'pfn.c'::db_limit"))
        except gdb.error as e:
            raise MdlabError(f"cannot read the PFN database ('pfn.c'::db, db_limit): {e}")
        if not int(self.db):
            raise MdlabError("the PFN database does not exist yet (pfn_init has not run)")

    def entry(self, pfn):
        """The entry as a dict, or None beyond the database."""
        if pfn >= self.limit:
            return None
        try:
            e = self.db[pfn]
            fields = {name: int(e[name]) for name in
                      ("state", "memtype", "owner_kind", "lock_count", "next", "prev", "owner")}
        except (gdb.error, gdb.MemoryError) as err:
            raise MdlabError(f"cannot read PFN entry 0x{pfn:x}: {err}")
        fields["state_name"] = _kernel_name("'pfn.c'::state_names", "enum pfn_state",
                                            fields["state"], "PFN_")
        fields["owner_name"] = _kernel_name("'pfn.c'::owner_names", "enum pfn_owner",
                                            fields["owner_kind"], "PFN_OWNER_")
        return fields

    def summary(self, pfn):
        e = self.entry(pfn)
        if e is None:
            return f"beyond the PFN database (limit 0x{self.limit:x}): not RAM"
        text = f"{e['state_name']}, type {memtype_name(e['memtype'])}"
        if e["owner_kind"]:
            text += f", owner {e['owner_name']} 0x{e['owner']:x}"
        if e["lock_count"]:
            text += f", lock count {e['lock_count']}"
        return text


def pfn_summary(pfn):
    try:
        return PfnDatabase().summary(pfn)
    except MdlabError as e:
        return str(e)


# ------------------------------------------------------------------------------ commands

class MdlabCommand(gdb.Command):
    """Base: MdlabError turned into one message line.  A command taking one expression gets
    the whole argument string (`mdlab-pfn ((unsigned long *)(Mdl + 1))[0]`); one taking
    several gets them split at spaces (gdb's own argv rules: quote an expression with spaces)."""
    single_expression = True

    def __init__(self, name):
        super().__init__(name, gdb.COMMAND_DATA)
        self.command_name = name

    def invoke(self, arg, from_tty):
        global _sections
        _sections = None
        try:
            if self.single_expression:
                args = arg.strip()
                argv = ["-k", args[2:].strip()] if args == "-k" or args.startswith("-k ") else [args]
                self.run([a for a in argv if a])
            else:
                self.run(gdb.string_to_argv(arg))
        except MdlabError as e:
            print(f"{self.command_name}: {e}")

    def usage(self):
        raise MdlabError("usage: " + self.__doc__.splitlines()[0])


def print_translation(root, root_label, va):
    """mdlab-pte's body: every level, the leaf's type, the frame."""
    pat, pat_source = pat_value()
    idx = [(va >> (12 + 9 * (lv - 1))) & 511 for lv in (4, 3, 2, 1)]
    print(f"va 0x{va:016x}: PML4 {idx[0]}, PDPT {idx[1]}, PD {idx[2]}, PT {idx[3]}, "
          f"offset 0x{va & 0xFFF:x}  ({region_name(va)})  [{root_label} 0x{root:x}]")
    steps = walk(root, va)
    for level, entry_pa, entry in steps:
        line = f"  {ENTRY_NAMES[level]:<5} at pa 0x{entry_pa:010x} = 0x{entry:016x}"
        if not entry & P:
            print(line + "  not present")
            print(f"  not present at level {level} ({ENTRY_NAMES[level]} in the {TABLE_NAMES[level]})")
            return
        if is_leaf(entry, level):
            line += f" -> frame 0x{(entry & LEAF_MASK[level]) >> 12:x}"
        else:
            line += f" -> {TABLE_NAMES[level - 1]} 0x{entry & ADDR_MASK:x}"
        print(line + f"  [{describe_entry(entry, level)}]")
    level, _, leaf = steps[-1]
    size = LEAF_SIZE[level]
    base = leaf & LEAF_MASK[level]
    pa = base + (va & (size - 1))
    slot = leaf_slot(leaf, level)
    enc, type_name = pat_slot_type(pat, slot)
    bits = leaf_pat_bits(leaf, level)
    rw = all(e & RW for _, _, e in steps)
    user = all(e & US for _, _, e in steps)
    nx = any(e & NX for _, _, e in steps)
    page_va = va & ~(size - 1)
    print(f"  leaf: {LEAF_NAMES[level]} page 0x{page_va:016x}-0x{page_va + size - 1:016x} "
          f"-> frame 0x{base >> 12:x}")
    print(f"  PAT slot {slot} (PAT {bits[0]} PCD {bits[1]} PWT {bits[2]}): IA32_PAT byte 0x{enc:02x} "
          f"= {type_name}")
    print(f"      IA32_PAT 0x{pat:016x} from {pat_source}")
    print(f"  effective: {'U' if user else 'S'} {'RW' if rw else 'R'} {'NX' if nx else 'X'} "
          f"{'G' if leaf & G else '-'} {type_name}")
    print(f"  0x{va:016x} -> pa 0x{pa:x}, PFN 0x{pa >> 12:x} ({pfn_summary(pa >> 12)})")


class MdlabPte(MdlabCommand):
    """mdlab-pte [-k] VA
Walk the page tables for VA and decode every level: the entry's physical address, raw value
and bits, then the leaf's page, its PAT slot and the memory type IA32_PAT gives that slot,
the effective rights (RW and U/S ANDed, NX ORed across levels) and the frame's PFN entry.
VA is a gdb expression ($rax, Mdl->MappedSystemVa, 0xffffc00000000000).  The tables are
CR3's, or the kernel's own (kernel_root) with -k."""

    def __init__(self):
        super().__init__("mdlab-pte")

    def run(self, argv):
        root, label, argv = root_from_flag(argv)
        if len(argv) != 1:
            self.usage()
        va = value_of(argv[0])
        if not canonical(va):
            raise MdlabError(f"0x{va:x} is not a canonical address")
        print_translation(root, label, va)


class MdlabPfn(MdlabCommand):
    """mdlab-pfn N
The PFN database entry of frame N (mm/pfn.h struct pfn_entry): state, memory type, owner,
lock count, free-list links, and how the direct map maps the frame now."""

    def __init__(self):
        super().__init__("mdlab-pfn")

    def run(self, argv):
        if len(argv) != 1:
            self.usage()
        pfn = value_of(argv[0])
        db = PfnDatabase()
        e = db.entry(pfn)
        if e is None:
            print(f"PFN 0x{pfn:x} (pa 0x{pfn << 12:x}): beyond the PFN database "
                  f"(limit 0x{db.limit:x}): not RAM")
            return
        print(f"PFN 0x{pfn:x} (pa 0x{pfn << 12:x}): state {e['state_name']}  "
              f"(entry at 0x{int(db.db) + pfn * db.db.type.target().sizeof:x})")
        line = (f"  memtype {memtype_name(e['memtype'])}, owner {e['owner_name']} 0x{e['owner']:x}, "
                f"lock count {e['lock_count']}")
        if e["state_name"] in ("free", "zeroed"):
            line += f", free-list links next 0x{e['next']:x} prev 0x{e['prev']:x}"
        print(line)
        alias = DIRECT_MAP + (pfn << 12)
        steps = walk(current_cr3(), alias)
        level, _, leaf = steps[-1]
        if not leaf & P:
            print(f"  direct map 0x{alias:016x}: not mapped (stops at level {level})")
            return
        pat, _ = pat_value()
        _, type_name = pat_slot_type(pat, leaf_slot(leaf, level))
        rw = all(x & RW for _, _, x in steps)
        nx = any(x & NX for _, _, x in steps)
        print(f"  direct map 0x{alias:016x}: mapped {type_name}, {'RW' if rw else 'R'} "
              f"{'NX' if nx else 'X'}, {LEAF_NAMES[level]} page")


class MdlabMdl(MdlabCommand):
    """mdlab-mdl ADDR
Decode the MDL at ADDR (a gdb expression: Mdl, $rsi, 0xffffc08000001010): its fields, the
flags by name, the PFN array with what the PFN database says of each frame, and the PTEs of
its system mapping, page by page, each checked against the PFN array."""

    def __init__(self):
        super().__init__("mdlab-mdl")

    def run(self, argv):
        if len(argv) != 1:
            self.usage()
        at = value_of(argv[0])
        raw = read_virt(at, MDL_HEADER)
        (nxt, size, flags, process, mapped, start, count, offset) = struct.unpack("<QhH4xQQQII", raw)
        size &= 0xFFFF
        names = "|".join(n for bit, n in MDL_FLAGS if flags & bit) or "none"
        pages = (offset + count + PAGE_SIZE - 1) // PAGE_SIZE
        slots = (size - MDL_HEADER) // 8 if size >= MDL_HEADER else 0
        print(f"MDL at 0x{at:016x}")
        print(f"  Next           0x{nxt:x}")
        print(f"  Size           0x{size:x} (header 0x{MDL_HEADER:x} + {slots} PFN slots)")
        print(f"  MdlFlags       0x{flags:04x} {names}")
        print(f"  Process        0x{process:x}")
        print(f"  MappedSystemVa 0x{mapped:x}")
        print(f"  StartVa        0x{start:x}")
        print(f"  ByteCount      0x{count:x}")
        print(f"  ByteOffset     0x{offset:x}  (buffer at 0x{start + offset:x}, {pages} page(s))")
        odd = ("Size is smaller than the header" if size < MDL_HEADER else
               "StartVa is not page-aligned" if start & 0xFFF else
               "ByteOffset is not inside a page" if offset >= PAGE_SIZE else None)
        if odd:
            print(f"  this does not look like an MDL ({odd}): the first PFN slots only")
            pages = min(pages, 4)
        shown = min(pages, MAX_SHOWN)
        pfns = list(struct.unpack(f"<{shown}Q", read_virt(at + MDL_HEADER, 8 * shown))) if shown else []
        try:
            db = PfnDatabase()
        except MdlabError as e:
            db = None
            print(f"  ({e})")
        print(f"  PFN array ({pages} entries):")
        for i, pfn in enumerate(pfns):
            print(f"    [{i}] 0x{pfn:x}  {db.summary(pfn) if db else ''}")
        if shown < pages:
            print(f"    ... {pages - shown} more")
        if odd:
            return
        if not flags & 0x0005:   # MAPPED_TO_SYSTEM_VA | SOURCE_IS_NONPAGED_POOL
            print("  no system mapping")
            return
        self.print_mapping(mapped & ~0xFFF, pfns, pages)

    @staticmethod
    def print_mapping(base, pfns, pages):
        pat, pat_source = pat_value()
        root = current_cr3()
        print(f"  system mapping at 0x{base:x} ({region_name(base)}), PTEs read now "
              f"(types per {pat_source.split(',')[0]}):")
        for i, pfn in enumerate(pfns):
            va = base + i * PAGE_SIZE
            level, _, leaf = walk(root, va)[-1]
            if not leaf & P:
                print(f"    page {i} 0x{va:016x}: not present (level-{level} entry 0x{leaf:016x})")
                continue
            frame = ((leaf & LEAF_MASK[level]) + (va & (LEAF_SIZE[level] - 1))) >> 12
            slot = leaf_slot(leaf, level)
            _, type_name = pat_slot_type(pat, slot)
            check = "= PFN[%d]" % i if frame == pfn else "!= PFN[%d] 0x%x" % (i, pfn)
            print(f"    page {i} 0x{va:016x}: {ENTRY_NAMES[level]} 0x{leaf:016x} "
                  f"[{describe_entry(leaf, level)}] slot {slot} {type_name} -> frame 0x{frame:x} {check}")
        if len(pfns) < pages:
            print(f"    ... {pages - len(pfns)} more pages")


class MdlabPat(MdlabCommand):
    """mdlab-pat
IA32_PAT slot by slot: the encoding, the type, the PTE bits (PAT PCD PWT) that select it."""

    single_expression = False

    def __init__(self):
        super().__init__("mdlab-pat")

    def run(self, argv):
        if argv:
            self.usage()
        pat, source = pat_value()
        # Only a value read can match; the power-on value means the kernel has not set it yet.
        if source.startswith("assumed"):
            verdict = "nothing read: this is mdlab's documented layout, not the MSR"
        elif pat == PAT_POWER_ON:
            verdict = "the power-on value: the kernel has not programmed the PAT yet"
        elif pat == PAT_DOCUMENTED:
            verdict = f"matches mdlab's documented layout 0x{PAT_DOCUMENTED:016x}"
        else:
            verdict = f"DIFFERS FROM mdlab's documented layout 0x{PAT_DOCUMENTED:016x}"
        print(f"IA32_PAT = 0x{pat:016x} ({verdict})")
        print(f"  read from {source}")
        print("  slot  enc   type  PAT PCD PWT")
        for slot in range(8):
            enc, name = pat_slot_type(pat, slot)
            print(f"  {slot:4}  0x{enc:02x}  {name:<4}  {slot >> 2 & 1:3} {slot >> 1 & 1:3} {slot & 1:3}")


def format_size(n):
    """Bytes in the largest unit they reach, as the monitor's ptdump prints them."""
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift:
            whole, rest = divmod(n, 1 << shift)
            return f"{whole}{unit}" if not rest else f"{whole}.{rest * 10 >> shift}{unit}"
    return f"{n}B"


class MdlabPtdump(MdlabCommand):
    """mdlab-ptdump [-k] [START [END]]
The page tables as merged ranges, like the monitor's ptdump: consecutive leaves with the
same effective rights, memory type and region merge into one line.  [START, END) in gdb
expressions, quoted if they hold spaces (END 0 or absent: to the top).  The tables are CR3's, or kernel_root's with -k."""

    single_expression = False

    def __init__(self):
        super().__init__("mdlab-ptdump")

    def run(self, argv):
        root, label, argv = root_from_flag(argv)
        if len(argv) > 2:
            self.usage()
        lo = value_of(argv[0]) if argv else 0
        hi = value_of(argv[1]) if len(argv) == 2 else 0
        hi_incl = (hi - 1) if hi else 0xFFFFFFFFFFFFFFFF
        if hi and hi <= lo:
            self.usage()
        pat, source = pat_value()
        print(f"page tables at 0x{root:x} ({label}), va 0x{lo:016x}-0x{hi_incl:016x}; "
              f"types per {source.split(',')[0]}")
        print(f"{'start':<18} {'end':<18} {'size':>7}  {'leaves':<7} U/S RW X/NX G type (region)")
        runs = []
        for first, last, level, attrs in self.leaves(root, lo, hi_incl, pat):
            region = region_name(first)
            if region == "user" and not attrs[0]:
                # Supervisor leaves in the low half are no user's: the loader's identity map.
                region = "low half, supervisor: the loader's identity map"
            key = attrs + (region,)
            if runs and runs[-1][1] + 1 == first and runs[-1][3] == key:
                runs[-1][1] = last
                runs[-1][2].add(level)
            else:
                runs.append([first, last, {level}, key])
        mapped = 0
        for first, last, levels, (user, rw, nx, g, type_name, region) in runs:
            size = last - first + 1
            mapped += size
            leaves = "+".join(LEAF_NAMES[lv] for lv in sorted(levels))
            print(f"0x{first:016x}-0x{last:016x} {format_size(size):>7}  {leaves:<7} "
                  f"{'U' if user else 'S':<3} {'RW' if rw else 'R':<2} {'NX' if nx else 'X':<4} "
                  f"{'G' if g else '-'} {type_name:<4} ({region})")
        print(f"{len(runs)} range{'' if len(runs) == 1 else 's'}, "
              f"{format_size(mapped) if mapped else 'nothing'} mapped")

    def leaves(self, root, lo, hi_incl, pat):
        """(first, last, level, (user, rw, nx, g, type)) of every present leaf overlapping
        [lo, hi_incl], clipped to it, in address order; one table read per table."""
        def visit(table, level, base, rw, user, nx):
            span = 1 << (12 + 9 * (level - 1))
            entries = struct.unpack("<512Q", read_phys(table, PAGE_SIZE))
            for i, entry in enumerate(entries):
                va = sign_extend(base + i * span)
                if not entry & P or va + span - 1 < lo or va > hi_incl:
                    continue
                e_rw, e_user, e_nx = rw and bool(entry & RW), user and bool(entry & US), nx or bool(entry & NX)
                if is_leaf(entry, level):
                    _, type_name = pat_slot_type(pat, leaf_slot(entry, level))
                    yield (max(va, lo), min(va + span - 1, hi_incl), level,
                           (e_user, e_rw, e_nx, bool(entry & G), type_name))
                elif level > 1:
                    yield from visit(entry & ADDR_MASK, level - 1, base + i * span, e_rw, e_user, e_nx)
        yield from visit(root, 4, 0, True, True, False)


# ------------------------------------------------------------------------------ kernel objects

def static(file, name):
    """The static `name` of kernel source `file` ('process.c'::processes), or MdlabError."""
    try:
        return gdb.parse_and_eval(f"'{file}'::{name}")
    except gdb.error as e:
        raise MdlabError(f"cannot read {file}'s {name}: {e}") from e


def print_fields(value, indent="  "):
    """Every integer field of a struct value, one per line."""
    for f in value.type.strip_typedefs().fields():
        v = value[f.name]
        try:
            print(f"{indent}{f.name:<20} {int(v)}")
        except gdb.error:
            print(f"{indent}{f.name:<20} {v}")


class MdlabPs(MdlabCommand):
    """mdlab-ps
The live processes (kernel/process.c's list): PID, name, bits (32 for a 32-bit image), WOW64, PML4,
locked pages."""

    single_expression = False

    def __init__(self):
        super().__init__("mdlab-ps")

    def run(self, argv):
        if argv:
            self.usage()
        p, n = static("process.c", "processes"), 0
        print(f"  {'PID':>5} {'name':<16} {'bits':<4} {'WOW64':<5} {'PML4':<12} {'locked':>7}")
        while int(p) and n < 4096:
            print(f"  {int(p['pid']):5} {p['name'].string():<16} {'32' if bool(p['compat32']) else '64':<4} "
                  f"{'yes' if bool(p['wow64']) else 'no':<5} "
                  f"0x{int(p['mm']['root']['pml4']):010x} {int(p['mm']['locked_pages']):7}")
            p, n = p["next"], n + 1
        print(f"{n} live process{'' if n == 1 else 'es'}")


class MdlabSysptes(MdlabCommand):
    """mdlab-sysptes
The system-PTE space's counters (mm/syspte.c's struct syspte_stats): total, free, runs, ..."""

    single_expression = False

    def __init__(self):
        super().__init__("mdlab-sysptes")

    def run(self, argv):
        if argv:
            self.usage()
        # The space's own counts (struct vrange), as syspte_get_stats computes them; the
        # counters of `st` for the rest.  A release still pending (one-entry cache) is free.
        space, st = static("syspte.c", "space"), static("syspte.c", "st")
        pending = 1 if int(static("syspte.c", "pending")) != 0xFFFFFFFF else 0
        total, free = int(space["nslots"]), int(space["free_slots"]) + pending
        print(f"system PTEs at 0x{LAYOUT['KVA_SYSPTE_BASE']:016x}: {total} in all, {free} free "
              f"({total - free} in use) in {int(space['free_runs'])} free run(s)"
              + (" (one release pending)" if pending else ""))
        for name in ("peak_in_use", "reservations", "releases", "failures_low", "failures_normal",
                     "failures_high", "flushes"):
            print(f"  {name:<20} {int(st[name])}")


class MdlabPool(MdlabCommand):
    """mdlab-pool
Pool usage (mm/pool.c's struct pool_stats) and the live allocations by tag."""

    single_expression = False

    def __init__(self):
        super().__init__("mdlab-pool")

    def run(self, argv):
        if argv:
            self.usage()
        stats, space = static("pool.c", "stats"), static("pool.c", "va_space")
        print(f"pool: its virtual range {int(space['nslots'])} pages, {int(space['free_slots'])} free")
        for name in ("bytes_in_use", "pages_in_use", "allocations", "slab_pages", "large_pages"):
            print(f"  {name:<20} {int(stats[name])}")
        tags = static("pool.c", "tags")
        lo, hi = tags.type.strip_typedefs().range()
        print(f"  {'tag':<6} {'allocations':>11} {'bytes':>12}")
        for i in range(lo, hi + 1):
            t = tags[i]
            if int(t["allocs"]):
                raw = int(t["tag"]).to_bytes(4, "little")
                name = "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
                print(f"  {name:<6} {int(t['allocs']):11} {int(t['bytes']):12}")


class MdlabObjects(MdlabCommand):
    """mdlab-objects
The monitor's live objects (kernel/lab/objects.c): name, kind, address, MDL, process."""

    single_expression = False
    KINDS = {0: "pool", 1: "MDL", 2: "mapping", 3: "process"}

    def __init__(self):
        super().__init__("mdlab-objects")

    def run(self, argv):
        if argv:
            self.usage()
        table = static("objects.c", "objects")
        lo, hi = table.type.strip_typedefs().range()
        n = 0
        for i in range(lo, hi + 1):
            o = table[i]
            if not bool(o["used"]):
                continue
            n += 1
            kind = self.KINDS.get(int(o["kind"]), "?")
            where = int(o["pool"]) if kind == "pool" else int(o["va"])
            mdl, proc = int(o["mdl"]), int(o["process"])
            print(f"  {o['name'].string():<15} {kind:<8} "
                  + (f"va 0x{where:016x}" if kind in ("pool", "mapping") else " " * 21)
                  + (f"  MDL 0x{mdl:016x} (mdlab-mdl 0x{mdl:x})" if mdl else "")
                  + (f"  PID {int(o['process']['pid'])}" if proc else ""))
        print(f"{n} live object{'' if n == 1 else 's'}")


for command in (MdlabPte, MdlabPfn, MdlabMdl, MdlabPat, MdlabPtdump, MdlabPs, MdlabSysptes, MdlabPool,
                MdlabObjects):
    command()
