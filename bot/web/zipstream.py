"""A stored (uncompressed) ZIP written front to back, whose length is known
before a byte of it is sent.

Every header is a function of the members' names and sizes only: the CRC-32
of each member travels in a data descriptor after its bytes, so nothing has to
be read twice and :func:`zip_length` gives the exact Content-Length up front
(a browser then shows the download's progress). Members or offsets past 4 GiB
get ZIP64 fields, decided per member by the same rules in the length and in
the bytes.
"""

from __future__ import annotations

import dataclasses
import struct
import time
import zlib
from collections.abc import Generator
from pathlib import Path

from bot.web.files import open_servable

__all__ = ["ZipMember", "zip_length", "zip_stream"]

_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_FLAGS = 0x0808  # bit 3: sizes and CRC in a data descriptor; bit 11: names are UTF-8
_VERSION = 20
_VERSION_ZIP64 = 45
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR = struct.Struct("<IIII")
_DESCRIPTOR64 = struct.Struct("<IIQQ")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")


@dataclasses.dataclass(frozen=True, slots=True)
class ZipMember:
    """One file to put in the archive: its name inside, its path, size and mtime."""

    name: str
    path: Path
    size: int
    mtime: float

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> ZipMember:
        """The member for ``path`` as it is now on disk (a symlink is refused, as everywhere)."""
        src, st = open_servable(path)
        src.close()
        return cls(name or path.name, path, st.st_size, st.st_mtime)


def _dos_time(mtime: float) -> tuple[int, int]:
    t = time.localtime(mtime)
    year = min(max(t.tm_year, 1980), 2107)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def _zip64(member: ZipMember) -> bool:
    return member.size >= _U32


def _local_header(member: ZipMember) -> bytes:
    name = member.name.encode()
    big = _zip64(member)
    # The real sizes live in the descriptor; a ZIP64 member says so with an extra field here.
    extra = struct.pack("<HHQQ", 1, 16, 0, 0) if big else b""
    dos_time, dos_date = _dos_time(member.mtime)
    return _LOCAL.pack(0x04034B50, _VERSION_ZIP64 if big else _VERSION, _FLAGS, 0, dos_time, dos_date, 0,
                       _U32 if big else 0, _U32 if big else 0, len(name), len(extra)) + name + extra


def _descriptor(member: ZipMember, crc: int) -> bytes:
    if _zip64(member):
        return _DESCRIPTOR64.pack(0x08074B50, crc, member.size, member.size)
    return _DESCRIPTOR.pack(0x08074B50, crc, member.size, member.size)


def _central_header(member: ZipMember, crc: int, offset: int) -> bytes:
    name = member.name.encode()
    values = []
    if member.size >= _U32:
        values += [member.size, member.size]
    if offset >= _U32:
        values.append(offset)
    extra = struct.pack(f"<HH{len(values)}Q", 1, 8 * len(values), *values) if values else b""
    version = _VERSION_ZIP64 if values else _VERSION
    dos_time, dos_date = _dos_time(member.mtime)
    size = _U32 if member.size >= _U32 else member.size
    return _CENTRAL.pack(0x02014B50, version, version, _FLAGS, 0, dos_time, dos_date, crc, size, size,
                         len(name), len(extra), 0, 0, 0, 0, _U32 if offset >= _U32 else offset) + name + extra


def _end_records(count: int, directory_size: int, directory_offset: int) -> bytes:
    if count < _U16 and directory_size < _U32 and directory_offset < _U32:
        return _END.pack(0x06054B50, 0, 0, count, count, directory_size, directory_offset, 0)
    end64_offset = directory_offset + directory_size
    return (_END64.pack(0x06064B50, 44, _VERSION_ZIP64, _VERSION_ZIP64, 0, 0, count, count, directory_size,
                        directory_offset)
            + _LOCATOR64.pack(0x07064B50, 0, end64_offset, 1)
            + _END.pack(0x06054B50, 0, 0, min(count, _U16), min(count, _U16), min(directory_size, _U32),
                        min(directory_offset, _U32), 0))


def zip_length(members: list[ZipMember]) -> int:
    """The exact byte length of :func:`zip_stream` over ``members``."""
    offset = 0
    directory = 0
    for m in members:
        directory += len(_central_header(m, 0, offset))
        offset += len(_local_header(m)) + m.size + len(_descriptor(m, 0))
    return offset + directory + len(_end_records(len(members), directory, offset))


def zip_stream(members: list[ZipMember], chunk_bytes: int) -> Generator[bytes, None, None]:
    """The archive in chunks of at most ``chunk_bytes`` (headers in their own).
    A member whose file changed size since :meth:`ZipMember.of` raises OSError:
    the length promised up front would otherwise be a lie."""
    offset = 0
    central = []
    for m in members:
        header = _local_header(m)
        yield header
        crc = 0
        sent = 0
        src, _st = open_servable(m.path)
        with src:
            while sent < m.size and (chunk := src.read(min(chunk_bytes, m.size - sent))):
                crc = zlib.crc32(chunk, crc)
                sent += len(chunk)
                yield chunk
        if sent != m.size:
            raise OSError(f"{m.name} shrank while it was being sent")
        yield _descriptor(m, crc)
        central.append(_central_header(m, crc, offset))
        offset += len(header) + m.size + len(_descriptor(m, crc))
    directory = b"".join(central)
    yield directory + _end_records(len(members), len(directory), offset)
