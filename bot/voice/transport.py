"""Transport (UDP-layer) decryption of Discord voice packets, rtpsize modes.

Layout of an rtpsize datagram::

    [ header: 12 + 4*CC (+ 4-byte extension preamble) ]  <- AAD
    [ ciphertext: extension body + frame + padding ]
    [ 16-byte tag ][ 4-byte big-endian nonce counter ]

The nonce is the counter followed by zeros: 24 bytes for XChaCha20-Poly1305,
12 for AES-256-GCM. One decryptor is built per session key (the key is fixed
until the next SESSION_DESCRIPTION), so the per-packet cost is the AEAD call.
"""

from __future__ import annotations

import ctypes
from typing import Final, Protocol, Sequence

import nacl._sodium
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .refused import DatagramRefused
from .rtp import RtpHeader

__all__ = (
    "AUTH_FAILED",
    "AesGcmDecryptor",
    "TransportDecryptor",
    "TransportError",
    "UnsupportedModeError",
    "XChaChaDecryptor",
    "create_decryptor",
)

#: Drop reason of a datagram whose tag does not match (wrong key, tampered bytes).
AUTH_FAILED: Final = "auth_failed"

_TAG_SIZE = 16
_NONCE_COUNTER_SIZE = 4
_KEY_SIZE = 32
_XCHACHA_NONCE_SIZE = 24
_GCM_NONCE_SIZE = 12
_XCHACHA_NONCE_PAD = bytes(_XCHACHA_NONCE_SIZE - _NONCE_COUNTER_SIZE)
_GCM_NONCE_PAD = bytes(_GCM_NONCE_SIZE - _NONCE_COUNTER_SIZE)


class TransportError(DatagramRefused):
    """A datagram that failed transport decryption.

    ``reason`` is a counter key: ``truncated`` (no room for tag and nonce) or
    :data:`AUTH_FAILED` (tag mismatch: wrong key, tampered header or payload).
    """


class UnsupportedModeError(ValueError):
    """The voice server negotiated an encryption mode this layer cannot open."""


class TransportDecryptor(Protocol):
    """Opens the encrypted part of one rtpsize datagram."""

    mode: str

    def decrypt(self, data: bytes, header: RtpHeader) -> bytes:
        """Return the plaintext (extension body + frame + padding) or raise :class:`TransportError`."""
        ...


def _split(data: bytes, header: RtpHeader) -> tuple[bytes, bytes, bytes]:
    """Cut a datagram into (aad, ciphertext with tag, nonce counter)."""
    end = len(data) - _NONCE_COUNTER_SIZE
    if end - header.header_length < _TAG_SIZE:
        raise TransportError("truncated")
    return data[: header.header_length], data[header.header_length : end], data[end:]


def _xchacha_binding() -> ctypes._CFuncPtr:
    # PyDLL: the call keeps the GIL. It takes about 2 us; releasing the GIL
    # for it handed the GIL to a recording worker, and the socket thread then
    # waited for the worker's next release before it could go on.
    sodium = ctypes.PyDLL(nacl._sodium.__file__)
    function = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
    function.argtypes = [
        ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong,
        ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_char_p,
    ]
    function.restype = ctypes.c_int
    return function


_xchacha_open = _xchacha_binding()
#: Bytes of plaintext buffer a decryptor starts with: any datagram of a 1500-byte MTU.
_PLAIN_BUFFER = 2048
_new_buffer = ctypes.create_string_buffer


class XChaChaDecryptor:
    """``aead_xchacha20_poly1305_rtpsize`` (the mode every Discord client must support).

    Calls libsodium (the copy PyNaCl bundles) directly: ``nacl.bindings``'
    wrapper re-checks every argument and formats its error messages on every
    call, 4.1 us per datagram against 1.6 us. Key and nonce sizes are fixed
    here and the ciphertext holds at least a tag (:func:`_split`).
    """

    __slots__ = ("_key", "_plain", "_plain_view")
    mode = "aead_xchacha20_poly1305_rtpsize"

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Reused for every datagram (one receiver thread at a time; grown for an oversized one).
        self._plain = _new_buffer(_PLAIN_BUFFER)
        self._plain_view = memoryview(self._plain).cast("B")

    def decrypt(self, data: bytes, header: RtpHeader) -> bytes:
        """Return the plaintext or raise :class:`TransportError`."""
        aad, ciphertext, counter = _split(data, header)
        size = len(ciphertext)
        plain = self._plain
        if size > len(plain):
            plain = self._plain = _new_buffer(size)
            self._plain_view = memoryview(plain).cast("B")
        if _xchacha_open(plain, None, None, ciphertext, size, aad, len(aad), counter + _XCHACHA_NONCE_PAD,
                         self._key):
            raise TransportError(AUTH_FAILED)
        return self._plain_view[:size - _TAG_SIZE].tobytes()


class AesGcmDecryptor:
    """``aead_aes256_gcm_rtpsize`` (optional in Discord; the cipher is built once per key)."""

    __slots__ = ("_cipher",)
    mode = "aead_aes256_gcm_rtpsize"

    def __init__(self, key: bytes) -> None:
        self._cipher = AESGCM(key)

    def decrypt(self, data: bytes, header: RtpHeader) -> bytes:
        """Return the plaintext or raise :class:`TransportError`."""
        aad, ciphertext, counter = _split(data, header)
        try:
            return self._cipher.decrypt(counter + _GCM_NONCE_PAD, ciphertext, aad)
        except InvalidTag:
            raise TransportError(AUTH_FAILED) from None


_DECRYPTORS: dict[str, type[XChaChaDecryptor] | type[AesGcmDecryptor]] = {
    XChaChaDecryptor.mode: XChaChaDecryptor,
    AesGcmDecryptor.mode: AesGcmDecryptor,
}


def create_decryptor(mode: str, secret_key: bytes | Sequence[int]) -> TransportDecryptor:
    """Build the decryptor for a SESSION_DESCRIPTION's ``mode`` and ``secret_key``.

    discord.py keeps the key as the JSON list of ints; bytes are accepted too.
    Raises :class:`UnsupportedModeError` for any other mode or key size.
    """
    factory = _DECRYPTORS.get(mode)
    if factory is None:
        raise UnsupportedModeError(f"unsupported voice encryption mode {mode!r}")
    key = bytes(secret_key)
    if len(key) != _KEY_SIZE:
        raise UnsupportedModeError(f"voice secret key is {len(key)} bytes, expected {_KEY_SIZE}")
    return factory(key)
