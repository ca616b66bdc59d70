"""The few MLS (RFC 9420) encodings Discord's voice server needs as DAVE's external sender.

Discord is not a member of any DAVE group: it is the group's *external sender*
(RFC 9420 section 12.1.8.1), the party that proposes Adds and Removes which the
members then commit. This module holds the wire formats for that role, for the
one ciphersuite DAVE protocol version 1 uses (MLS_128_DHKEMP256_AES128GCM_SHA256_P256):

- the ExternalSender struct Discord sends as op 25,
- signed external Add/Remove proposals (PublicMessage, sender ``external 0``),
- ProposalRef (what op 27 "revoke" carries),
- just enough of a parser to split op 28 (commit MLSMessage || Welcome, no
  delimiter) and to read which proposals a commit references.

Byte layouts follow RFC 9420 (MLS) and the DAVE protocol whitepaper; they
re-serialize Discord's real package byte-identically and verify its real proposal (see the tests).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

_log = logging.getLogger(__name__)

MLS_VERSION_10 = 1
CIPHERSUITE_P256 = 2
WIRE_PUBLIC_MESSAGE = 1
WIRE_WELCOME = 3
SENDER_MEMBER = 1
SENDER_EXTERNAL = 2
SENDER_NEW_MEMBER_PROPOSAL = 3
SENDER_NEW_MEMBER_COMMIT = 4
CONTENT_APPLICATION = 1
CONTENT_PROPOSAL = 2
CONTENT_COMMIT = 3
PROPOSAL_ADD = 1
PROPOSAL_UPDATE = 2
PROPOSAL_REMOVE = 3
PROPOSAL_EXTERNAL_INIT = 6
PROPOSAL_GROUP_CONTEXT_EXTENSIONS = 7
CREDENTIAL_BASIC = 1
CREDENTIAL_X509 = 2
PROPOSAL_OR_REF_PROPOSAL = 1
PROPOSAL_OR_REF_REFERENCE = 2

_LABEL_PREFIX = b"MLS 1.0 "


class MLSDecodeError(ValueError):
    """Bytes that are not the MLS structure they were parsed as."""


# --- RFC 9420 section 2.1.2 variable-length integers and vectors ---------------


def encode_varint(n: int) -> bytes:
    """Minimal RFC 9420 varint: 2-bit length prefix, 1, 2 or 4 bytes."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    raise ValueError(f"MLS varint out of range: {n}")


def vec(data: bytes) -> bytes:
    """An opaque<V>: varint length, then the bytes."""
    return encode_varint(len(data)) + data


class Reader:
    """A cursor over TLS-presentation-language bytes; every read checks bounds."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        end = self.pos + n
        if end > len(self.data):
            raise MLSDecodeError(f"truncated: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def varint(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 1:
            value = ((first & 0x3F) << 8) | self.u8()
            minimum = 0x40
        elif prefix == 2:
            value = ((first & 0x3F) << 24) | int.from_bytes(self.take(3), "big")
            minimum = 0x4000
        else:
            raise MLSDecodeError(f"invalid varint prefix at offset {self.pos - 1}")
        if value < minimum:
            raise MLSDecodeError(f"non-minimal varint at offset {self.pos}")
        return value

    def vec(self) -> bytes:
        """An opaque<V>."""
        return self.take(self.varint())

    def sub(self) -> "Reader":
        """A reader over the next opaque<V> (for vectors of structs)."""
        return Reader(self.vec())

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


# --- Labeled signing and hashing (RFC 9420 sections 5.1.2, 5.2) ----------------


def sign_content(label: str, content: bytes) -> bytes:
    """SignContent for SignWithLabel: vec("MLS 1.0 " + label) || vec(content)."""
    return vec(_LABEL_PREFIX + label.encode()) + vec(content)


def ref_hash(label: str, value: bytes) -> bytes:
    """RefHash: SHA-256 over vec("MLS 1.0 " + label) || vec(value)."""
    return hashlib.sha256(vec(_LABEL_PREFIX + label.encode()) + vec(value)).digest()


# --- ExternalSender (op 25) -----------------------------------------------------


def encode_external_sender(public_point: bytes, identity: bytes = b"\x00") -> bytes:
    """ExternalSender: signature_key<V> || Credential (basic, identity<V>).

    Discord's identity is one zero byte; the signature key is the 65-byte
    uncompressed P-256 point.
    """
    return vec(public_point) + struct.pack(">H", CREDENTIAL_BASIC) + vec(identity)


@dataclass(frozen=True)
class ExternalSenderInfo:
    """A parsed ExternalSender struct."""

    signature_key: bytes
    credential_type: int
    identity: bytes

    @classmethod
    def parse(cls, data: bytes) -> "ExternalSenderInfo":
        r = Reader(data)
        key = r.vec()
        ctype = r.u16()
        if ctype != CREDENTIAL_BASIC:
            raise MLSDecodeError(f"external sender credential type {ctype} is not basic")
        identity = r.vec()
        if not r.done:
            raise MLSDecodeError("trailing bytes after ExternalSender")
        return cls(key, ctype, identity)

    def encode(self) -> bytes:
        return encode_external_sender(self.signature_key, self.identity)


# --- Structures inside commits and key packages ---------------------------------


def _skip_credential(r: Reader) -> bytes:
    ctype = r.u16()
    if ctype == CREDENTIAL_BASIC:
        return r.vec()
    if ctype == CREDENTIAL_X509:
        r.vec()
        return b""
    raise MLSDecodeError(f"unknown credential type {ctype}")


def _parse_leaf_node(r: Reader) -> bytes:
    """Skip a LeafNode; returns its basic-credential identity."""
    r.vec()  # encryption_key
    r.vec()  # signature_key
    identity = _skip_credential(r)
    for _ in range(5):  # capabilities: versions, ciphersuites, extensions, proposals, credentials
        r.vec()
    source = r.u8()
    if source == 1:
        r.take(16)  # lifetime: not_before, not_after
    elif source == 3:
        r.vec()  # parent_hash
    elif source != 2:
        raise MLSDecodeError(f"unknown leaf_node_source {source}")
    r.vec()  # extensions
    r.vec()  # signature
    return identity


@dataclass(frozen=True)
class KeyPackageInfo:
    """The parts of a KeyPackage the voice server looks at."""

    cipher_suite: int
    identity: bytes

    @property
    def user_id(self) -> int:
        """DAVE identities are the user id as a big-endian u64."""
        if len(self.identity) != 8:
            raise MLSDecodeError(f"key package identity is {len(self.identity)} bytes, not a u64 user id")
        return int.from_bytes(self.identity, "big")


def _parse_key_package(r: Reader) -> KeyPackageInfo:
    version = r.u16()
    if version != MLS_VERSION_10:
        raise MLSDecodeError(f"key package protocol version {version} is not MLS 1.0")
    suite = r.u16()
    r.vec()  # init_key
    identity = _parse_leaf_node(r)
    r.vec()  # extensions
    r.vec()  # signature
    return KeyPackageInfo(suite, identity)


def parse_key_package(data: bytes) -> KeyPackageInfo:
    """Parse a bare KeyPackage (op 26 payload) exactly."""
    r = Reader(data)
    info = _parse_key_package(r)
    if not r.done:
        raise MLSDecodeError("trailing bytes after KeyPackage")
    return info


def _skip_proposal(r: Reader) -> tuple[int, object]:
    ptype = r.u16()
    if ptype == PROPOSAL_ADD:
        return ptype, _parse_key_package(r)
    if ptype == PROPOSAL_UPDATE:
        return ptype, _parse_leaf_node(r)
    if ptype == PROPOSAL_REMOVE:
        return ptype, r.u32()
    if ptype in (PROPOSAL_EXTERNAL_INIT, PROPOSAL_GROUP_CONTEXT_EXTENSIONS):
        return ptype, r.vec()
    raise MLSDecodeError(f"proposal type {ptype} is not used by DAVE")


def _skip_update_path(r: Reader) -> None:
    _parse_leaf_node(r)
    r.vec()  # nodes<V>: UpdatePathNode = encryption_key<V> + encrypted_path_secret<V>


# --- PublicMessage ----------------------------------------------------------------


@dataclass(frozen=True)
class PublicMessage:
    """A parsed MLSMessage carrying a PublicMessage (the only wire format DAVE uses)."""

    group_id: bytes
    epoch: int
    sender_type: int
    sender_index: int
    content_type: int
    #: For proposals: (proposal_type, body). For commits: ProposalOrRef list as
    #: ("ref", ProposalRef) or ("inline", (proposal_type, body)).
    body: object
    has_path: bool
    #: version+wire_format+FramedContent bytes: what FramedContentTBS covers
    #: (the group context is appended only for member senders).
    tbs: bytes
    #: wire_format || FramedContent || FramedContentAuthData: what ProposalRef covers.
    authenticated_content: bytes
    signature: bytes
    #: How many bytes of the input this message used.
    length: int

    @property
    def proposal_refs(self) -> list[bytes]:
        """The ProposalRefs a commit references, in commit order."""
        if self.content_type != CONTENT_COMMIT:
            raise ValueError("not a commit")
        return [value for kind, value in self.body if kind == "ref"]  # type: ignore[union-attr]


def parse_public_message(data: bytes, pos: int = 0) -> PublicMessage:
    """Parse one MLSMessage(PublicMessage) starting at ``pos``; trailing bytes are allowed."""
    r = Reader(data, pos)
    version = r.u16()
    if version != MLS_VERSION_10:
        raise MLSDecodeError(f"MLSMessage version {version} is not MLS 1.0")
    wire = r.u16()
    if wire != WIRE_PUBLIC_MESSAGE:
        raise MLSDecodeError(f"MLSMessage wire format {wire} is not PublicMessage")
    content_start = r.pos
    group_id = r.vec()
    epoch = r.u64()
    sender_type = r.u8()
    sender_index = r.u32() if sender_type in (SENDER_MEMBER, SENDER_EXTERNAL) else 0
    if sender_type not in (SENDER_MEMBER, SENDER_EXTERNAL, SENDER_NEW_MEMBER_PROPOSAL, SENDER_NEW_MEMBER_COMMIT):
        raise MLSDecodeError(f"unknown sender type {sender_type}")
    r.vec()  # authenticated_data
    content_type = r.u8()
    has_path = False
    body: object
    if content_type == CONTENT_PROPOSAL:
        body = _skip_proposal(r)
    elif content_type == CONTENT_COMMIT:
        items: list[tuple[str, object]] = []
        proposals = r.sub()
        while not proposals.done:
            kind = proposals.u8()
            if kind == PROPOSAL_OR_REF_REFERENCE:
                items.append(("ref", proposals.vec()))
            elif kind == PROPOSAL_OR_REF_PROPOSAL:
                items.append(("inline", _skip_proposal(proposals)))
            else:
                raise MLSDecodeError(f"unknown ProposalOrRef type {kind}")
        present = r.u8()
        if present == 1:
            has_path = True
            _skip_update_path(r)
        elif present != 0:
            raise MLSDecodeError(f"invalid optional<UpdatePath> marker {present}")
        body = items
    elif content_type == CONTENT_APPLICATION:
        body = r.vec()
    else:
        raise MLSDecodeError(f"unknown content type {content_type}")
    content_end = r.pos
    signature = r.vec()
    if content_type == CONTENT_COMMIT:
        r.vec()  # confirmation_tag
    auth_end = r.pos
    if sender_type == SENDER_MEMBER:
        r.vec()  # membership_tag
    return PublicMessage(
        group_id=group_id,
        epoch=epoch,
        sender_type=sender_type,
        sender_index=sender_index,
        content_type=content_type,
        body=body,
        has_path=has_path,
        tbs=data[pos:content_end],
        authenticated_content=data[content_start - 2:auth_end],
        signature=signature,
        length=r.pos - pos,
    )


def proposal_ref(message: bytes) -> bytes:
    """RFC 9420 ProposalRef of a proposal MLSMessage (what op 27 revoke names)."""
    msg = parse_public_message(message)
    if msg.content_type != CONTENT_PROPOSAL:
        raise ValueError("proposal_ref needs a proposal message")
    return ref_hash("Proposal Reference", msg.authenticated_content)


def verify_external_proposal(message: bytes, public_point: bytes) -> bool:
    """Check an external sender's proposal signature (FramedContentTBS, no group context)."""
    msg = parse_public_message(message)
    if msg.sender_type != SENDER_EXTERNAL:
        raise ValueError("not an external sender's message")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
    try:
        key.verify(msg.signature, sign_content("FramedContentTBS", msg.tbs), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def parse_welcome_length(data: bytes, pos: int = 0) -> int:
    """Length of a bare Welcome (cipher_suite, secrets<V>, encrypted_group_info<V>) at ``pos``."""
    r = Reader(data, pos)
    suite = r.u16()
    if suite != CIPHERSUITE_P256:
        raise MLSDecodeError(f"welcome cipher suite {suite} is not DAVE v1's P-256 suite")
    r.vec()
    r.vec()
    return r.pos - pos


def split_commit_welcome(payload: bytes) -> tuple[bytes, bytes | None]:
    """Split an op 28 body (commit MLSMessage || optional bare Welcome, no delimiter)."""
    commit = parse_public_message(payload)
    if commit.content_type != CONTENT_COMMIT:
        raise MLSDecodeError("op 28 does not start with a commit")
    end = commit.length
    if end == len(payload):
        return payload, None
    welcome_len = parse_welcome_length(payload, end)
    if end + welcome_len != len(payload):
        raise MLSDecodeError("trailing bytes after the Welcome in op 28")
    return payload[:end], payload[end:]


def proposals_vector(items: list[bytes]) -> bytes:
    """The varint-length vector op 27 carries (MLSMessages for append)."""
    return vec(b"".join(items))


def refs_vector(refs: list[bytes]) -> bytes:
    """The op 27 revoke vector: each ProposalRef is itself an opaque<V>."""
    return vec(b"".join(vec(ref) for ref in refs))


# --- Discord's side: the external sender ----------------------------------------


class ExternalSender:
    """Discord's MLS external sender: a P-256 signing key that proposes Adds and Removes."""

    __slots__ = ("_key", "_public")

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def public_key(self) -> bytes:
        """The 65-byte uncompressed P-256 point members verify proposals with."""
        return self._public

    def package(self) -> bytes:
        """The op 25 payload (ExternalSender struct)."""
        return encode_external_sender(self._public)

    def add_proposal(self, group_id: int, epoch: int, key_package: bytes) -> bytes:
        """A signed external Add proposal (MLSMessage) for ``key_package`` at ``epoch``."""
        return self._proposal(group_id, epoch, struct.pack(">H", PROPOSAL_ADD) + key_package)

    def remove_proposal(self, group_id: int, epoch: int, leaf_index: int) -> bytes:
        """A signed external Remove proposal (MLSMessage) for ``leaf_index`` at ``epoch``."""
        return self._proposal(group_id, epoch, struct.pack(">HI", PROPOSAL_REMOVE, leaf_index))

    def _proposal(self, group_id: int, epoch: int, proposal: bytes) -> bytes:
        content = (
            vec(group_id.to_bytes(8, "big"))
            + struct.pack(">QBI", epoch, SENDER_EXTERNAL, 0)
            + vec(b"")  # authenticated_data
            + bytes((CONTENT_PROPOSAL,))
            + proposal
        )
        # FramedContentTBS for an external sender has no GroupContext (RFC 9420 6.1).
        tbs = struct.pack(">HH", MLS_VERSION_10, WIRE_PUBLIC_MESSAGE) + content
        signature = self._key.sign(sign_content("FramedContentTBS", tbs), ec.ECDSA(hashes.SHA256()))
        # PublicMessage auth for a proposal is the signature alone; external
        # senders carry no membership_tag.
        return tbs + vec(signature)
