"""Read the libuv version an ELF file carries, without loading or running it.

Design: every libuv build exports `uv_version()` and `uv_version_string()`
(include/uv.h, src/version.c), whether libuv is a shared library
(libuv.so.1), linked into an executable (Node.js exports them for addons) or
into an extension module (uvloop's loop.*.so). Both functions return
constants, so their machine code is one instruction and a return:

    x86-64  uv_version:         mov $0x12e00,%eax ; ret
            uv_version_string:  lea rel(%rip),%rax ; ret   (PIC)
                                mov $addr,%eax ; ret       (non-PIE executable)
    aarch64 uv_version:         movz w0,#lo ; movk w0,#hi,lsl #16 ; ret

We find the symbol through the GNU hash table (a handful of preads even in a
100 MB Node binary, where scanning .dynsym would read 7 MB), decode that one
instruction, and read the string it points at. The numeric version and the
string are cross-checked: the string is what libuv itself prints (it carries
the "-dev" suffix of unreleased builds), the number is the fallback.

Searching the file for strings like "1.46.0" instead would be guesswork: a
binary holds many version-shaped strings. Loading the file (ctypes) would run
its constructors in our process and cannot load a PIE executable at all.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

_ELF_MAGIC = b"\x7fELF"
_SHT_DYNSYM = 11
_SHT_SYMTAB = 2
_SHT_GNU_HASH = 0x6FFFFFF6
_PT_LOAD = 1
_EM_X86_64 = 62
_EM_AARCH64 = 183
_LINEAR_SCAN_LIMIT = 4 << 20  # bytes of .dynsym+.dynstr we accept to scan without a hash table

_VERSION_RE = re.compile(rb"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")


class ElfError(Exception):
    """The file is not an ELF object this reader understands (internal to runtimes/)."""


@dataclass(frozen=True, slots=True)
class LibuvBuild:
    """The libuv an ELF object carries: its version string and how it was read."""

    version: str
    hex_version: int
    method: str


@dataclass(frozen=True, slots=True)
class _Section:
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class _Elf:
    """Just enough of an ELF64 little-endian file: sections, loads, symbol lookup."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        head = os.pread(fd, 64, 0)
        if len(head) < 64 or head[:4] != _ELF_MAGIC:
            raise ElfError("not an ELF file")
        if head[4] != 2 or head[5] != 1:
            raise ElfError("only 64-bit little-endian ELF is supported")
        (self.machine,) = struct.unpack_from("<H", head, 18)
        phoff, shoff = struct.unpack_from("<QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 54)
        self.loads: list[tuple[int, int, int]] = []
        if phnum:
            ph = os.pread(fd, phentsize * phnum, phoff)
            for i in range(phnum):
                p_type, _flags, p_off, p_vaddr, _pa, p_filesz = struct.unpack_from(
                    "<IIQQQQ", ph, i * phentsize
                )
                if p_type == _PT_LOAD:
                    self.loads.append((p_vaddr, p_off, p_filesz))
        self.sections: list[_Section] = []
        if shnum:
            sh = os.pread(fd, shentsize * shnum, shoff)
            for i in range(shnum):
                _name, s_type, _f, addr, off, size, link, _info, _al, entsize = (
                    struct.unpack_from("<IIQQQQIIQQ", sh, i * shentsize)
                )
                self.sections.append(_Section(s_type, addr, off, size, link, entsize))

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def vaddr_to_offset(self, vaddr: int) -> int:
        for v, off, size in self.loads:
            if v <= vaddr < v + size:
                return off + (vaddr - v)
        raise ElfError(f"address {vaddr:#x} is in no loaded segment")

    def _name_at(self, strtab: _Section, index: int, want: bytes) -> bool:
        got = self.read(strtab.offset + index, len(want) + 1)
        return got == want + b"\0"

    def _sym(self, symtab: _Section, i: int) -> tuple[int, int, int]:
        raw = self.read(symtab.offset + i * 24, 24)
        st_name, _info, _other, shndx, value, _size = struct.unpack("<IBBHQQ", raw)
        return st_name, shndx, value

    def lookup(self, name: str) -> int | None:
        """The address of a defined symbol `name`, or None."""
        want = name.encode()
        for sec in self.sections:
            if sec.type == _SHT_GNU_HASH:
                dynsym = self.sections[sec.link]
                value = self._gnu_lookup(sec, dynsym, self.sections[dynsym.link], want)
                if value is not None:
                    return value
        # No hash table (or not found there): scan symbol tables if they are small.
        for sec in self.sections:
            if sec.type in (_SHT_DYNSYM, _SHT_SYMTAB):
                strtab = self.sections[sec.link]
                if sec.size + strtab.size > _LINEAR_SCAN_LIMIT:
                    continue
                value = self._scan(sec, strtab, want)
                if value is not None:
                    return value
        return None

    def _gnu_lookup(self, hsec: _Section, dynsym: _Section, dynstr: _Section,
                    want: bytes) -> int | None:
        nbuckets, symoffset, bloom_size, _shift = struct.unpack("<IIII", self.read(hsec.offset, 16))
        if nbuckets == 0:
            return None
        h = 5381
        for c in want:
            h = (h * 33 + c) & 0xFFFFFFFF
        buckets_off = hsec.offset + 16 + bloom_size * 8
        (i,) = struct.unpack("<I", self.read(buckets_off + (h % nbuckets) * 4, 4))
        if i < symoffset:
            return None
        chain_off = buckets_off + nbuckets * 4
        while True:
            (h2,) = struct.unpack("<I", self.read(chain_off + (i - symoffset) * 4, 4))
            if (h | 1) == (h2 | 1):
                st_name, shndx, value = self._sym(dynsym, i)
                if shndx != 0 and self._name_at(dynstr, st_name, want):
                    return value
            if h2 & 1:
                return None
            i += 1

    def _scan(self, symtab: _Section, strtab: _Section, want: bytes) -> int | None:
        syms = self.read(symtab.offset, symtab.size)
        strs = self.read(strtab.offset, strtab.size)
        key = want + b"\0"
        for i in range(len(syms) // 24):
            st_name, _i, _o, shndx, value, _s = struct.unpack_from("<IBBHQQ", syms, i * 24)
            if shndx != 0 and strs[st_name : st_name + len(key)] == key:
                return int(value)
        return None


def _strip_x86_prologue(code: bytes) -> tuple[bytes, int]:
    """Skip endbr64 and a frame-pointer prologue; returns the rest and bytes skipped."""
    skipped = 0
    if code.startswith(b"\xf3\x0f\x1e\xfa"):  # endbr64 (CET builds)
        code, skipped = code[4:], skipped + 4
    if code.startswith(b"\x55\x48\x89\xe5"):  # push %rbp; mov %rsp,%rbp
        code, skipped = code[4:], skipped + 4
    return code, skipped


def decode_uv_version(machine: int, code: bytes) -> int | None:
    """The constant `uv_version()` returns, decoded from its first bytes; None if not decodable."""
    if machine == _EM_X86_64:
        code, _ = _strip_x86_prologue(code)
        if len(code) >= 5 and code[0] == 0xB8:  # mov $imm32,%eax
            return int(struct.unpack_from("<I", code, 1)[0])
        return None
    if machine == _EM_AARCH64 and len(code) >= 8:
        w0, w1 = (int(x) for x in struct.unpack_from("<II", code, 0))
        # movz w0,#imm16 (hw=0): 0x52800000 | imm16 << 5 | rd
        if w0 & 0xFFE0001F != 0x52800000:
            return None
        value = (w0 >> 5) & 0xFFFF
        # optional movk w0,#imm16,lsl #16: 0x72a00000 | imm16 << 5 | rd
        if w1 & 0xFFE0001F == 0x72A00000:
            value |= ((w1 >> 5) & 0xFFFF) << 16
        return value
    return None


def decode_string_address(machine: int, code: bytes, func_addr: int) -> int | None:
    """The address `uv_version_string()` returns, decoded from its first bytes; or None."""
    if machine != _EM_X86_64:
        return None
    code, skipped = _strip_x86_prologue(code)
    if len(code) >= 5 and code[0] == 0xB8:  # mov $addr32,%eax (non-PIE)
        return int(struct.unpack_from("<I", code, 1)[0])
    if len(code) >= 7 and code[:3] == b"\x48\x8d\x05":  # lea rel32(%rip),%rax
        (rel,) = struct.unpack_from("<i", code, 3)
        return int(func_addr + skipped + 7 + rel)
    if len(code) >= 7 and code[:3] == b"\x48\xc7\xc0":  # mov $imm32,%rax
        return int(struct.unpack_from("<i", code, 3)[0])
    return None


def format_hex_version(value: int) -> str:
    """UV_VERSION_HEX (major << 16 | minor << 8 | patch) as "major.minor.patch"."""
    return f"{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def read_libuv_build(fd: int) -> LibuvBuild | None:
    """The libuv version the ELF object open at `fd` carries, or None if it has no libuv.

    Raises:
        ElfError: not an ELF file this reader understands, or the symbol's code
            could not be decoded (a build shape this reader does not know).
    """
    st = os.fstat(fd)
    # The same binary is decoded once per fdguard run; (dev, ino, size, mtime)
    # identifies it even when it is reached through different paths.
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        if len(_CACHE) >= 64:
            _CACHE.clear()
        _CACHE[key] = _read(fd)
    return _CACHE[key]


_CACHE: dict[tuple[int, int, int, int], LibuvBuild | None] = {}


def _read(fd: int) -> LibuvBuild | None:
    elf = _Elf(fd)
    addr = elf.lookup("uv_version")
    if addr is None:
        return None
    hex_version = decode_uv_version(elf.machine, elf.read(elf.vaddr_to_offset(addr), 16))
    if hex_version is None:
        raise ElfError("uv_version() found but its code is not a constant this reader decodes")
    numeric = format_hex_version(hex_version)
    saddr = elf.lookup("uv_version_string")
    if saddr is not None:
        code = elf.read(elf.vaddr_to_offset(saddr), 16)
        target = decode_string_address(elf.machine, code, saddr)
        if target is not None:
            raw = elf.read(elf.vaddr_to_offset(target), 64).split(b"\0", 1)[0]
            if _VERSION_RE.match(raw) and raw.decode().split("-")[0] == numeric:
                return LibuvBuild(raw.decode(), hex_version, "uv_version_string()")
    return LibuvBuild(numeric, hex_version, "uv_version()")
