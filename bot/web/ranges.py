"""HTTP Range for track files, read the way RFC 9110 section 14 says.

aiohttp's FileResponse answers 416 where the RFC wants the header ignored (an
unknown range unit, several ranges) and 206 with the whole file to
``bytes=-0``, which asks for nothing. :func:`byte_range` decides;
:class:`RangedFileResponse` hands FileResponse only a Range it reads the same
way (one absolute range, or one that is plainly unsatisfiable), so its
conditional requests, If-Range and sendfile keep working.
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

__all__ = ["RangedFileResponse", "Unsatisfiable", "byte_range"]

# RFC 9110: range-spec = int-range / suffix-range; both are plain digits.
_SPEC = re.compile(r"(\d*)-(\d*)\Z", re.ASCII)


class Unsatisfiable(enum.Enum):
    """The answer is 416: the ranges are invalid, or none overlaps the file."""

    RANGE = enum.auto()


def byte_range(header: str, size: int) -> tuple[int, int] | Unsatisfiable | None:
    """What a ``Range`` header asks of a ``size``-byte file: ``(first, last)``
    inclusive for one satisfiable range, :attr:`Unsatisfiable.RANGE` for 416,
    or None to ignore the header and send the whole file (a unit other than
    bytes, or several ranges, which this server does not send as multipart)."""
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip(" \t") for s in range_set.split(",")]
    specs = [s for s in specs if s]  # the list rule allows empty elements
    parsed = []
    for spec in specs:
        match = _SPEC.match(spec)
        if match is None or match.group(1) == match.group(2) == "":
            return Unsatisfiable.RANGE
        first, last = match.groups()
        if first and last and int(first) > int(last):
            return Unsatisfiable.RANGE
        parsed.append((first, last))
    if len(parsed) != 1:
        return Unsatisfiable.RANGE if not parsed else None
    first, last = parsed[0]
    if not first:  # suffix range: the last N bytes; N == 0 asks for nothing
        suffix = int(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable.RANGE
        return max(0, size - suffix), size - 1
    start = int(first)
    if start >= size:
        return Unsatisfiable.RANGE
    return start, size - 1 if not last else min(int(last), size - 1)


class RangedFileResponse(web.FileResponse):
    """A FileResponse whose Range handling follows :func:`byte_range`."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self._file = path

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        header = request.headers.get(hdrs.RANGE)
        if header is not None:
            headers = CIMultiDict(request.headers)
            del headers[hdrs.RANGE]
            try:
                size = os.stat(self._file).st_size
            except OSError:
                size = 0
            # Digit strings past Python's int() limit are invalid ranges, not crashes.
            try:
                decided = byte_range(header, size)
            except ValueError:
                decided = Unsatisfiable.RANGE
            if decided is Unsatisfiable.RANGE:
                # A start at the end of the file is what FileResponse itself answers with 416
                # (after If-Range, which may still turn this into a 200).
                headers[hdrs.RANGE] = f"bytes={size}-"
            elif decided is not None:
                headers[hdrs.RANGE] = f"bytes={decided[0]}-{decided[1]}"
            request = request.clone(headers=headers)
        return await super().prepare(request)
