"""Reading the text files users hand in (labels, answers, ledgers, manifests, lists, exports)."""

from __future__ import annotations

from pathlib import Path

from aloe.errors import AloeError


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises :class:`AloeError` for an unreadable file, or for bytes that are not UTF-8, naming the
    byte offset and line of the first one (files saved as Latin-1 or UTF-16 end up here).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AloeError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise AloeError(
            f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}, line {line}); "
            f"save it as UTF-8"
        ) from None
