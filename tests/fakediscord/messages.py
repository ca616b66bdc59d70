"""Messages the bot posts through the loopback Discord, and their attachments.

The fake's event loop writes these records; tests read them from their own
thread. Every change happens under one `threading.Condition` (`changes`) that
waiting helpers use, so a test can block on "the bot answered" without sleeps.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .state import User, snowflake

#: Message flag Discord sets on ephemeral replies.
FLAG_EPHEMERAL = 1 << 6

T = TypeVar("T")


def wait_until(changes: threading.Condition, probe: Callable[[], T | None], timeout: float, what: str,
               poll: float | None = None) -> T:
    """Block until `probe()` returns something not None (evaluated under `changes`,
    on every notification and, with `poll`, at least every `poll` seconds).

    Raises TimeoutError naming `what` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    with changes:
        while True:
            result = probe()
            if result is not None:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"fake Discord: timed out after {timeout:g} s waiting for {what}")
            changes.wait(left if poll is None else min(left, poll))


@dataclass(frozen=True)
class Attachment:
    """A file the bot uploaded; served back at `path` by the fake's HTTP server."""

    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None

    @property
    def path(self) -> str:
        """The server-relative download path."""
        return f"/attachments/{self.channel_id}/{self.id}/{self.filename}"

    def payload(self, base_url: str) -> dict[str, Any]:
        """The attachment object as Discord sends it."""
        url = base_url + self.path
        data: dict[str, Any] = {
            "id": str(self.id), "filename": self.filename, "size": len(self.data),
            "url": url, "proxy_url": url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.description:
            data["description"] = self.description
        return data


@dataclass(frozen=True)
class Message:
    """One message as stored by the fake (immutable: an edit stores a new version)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: tuple[dict[str, Any], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    flags: int = 0
    webhook_id: int | None = None
    application_id: int | None = None
    created: float = field(default_factory=time.time)
    edited: float | None = None
    #: The sender's ``allowed_mentions`` as given (None: not given, so Discord would
    #: let every mention in the content ping).
    allowed_mentions: dict[str, Any] | None = None

    @property
    def ephemeral(self) -> bool:
        """True when only the invoking user would see it."""
        return bool(self.flags & FLAG_EPHEMERAL)

    def edit(self, **changes: Any) -> "Message":
        """A new version of this message with `changes` applied and the edit time set."""
        return dataclasses.replace(self, edited=time.time(), **changes)

    def attachment(self, filename: str) -> Attachment:
        """The attachment named `filename` (KeyError if absent)."""
        for attachment in self.attachments:
            if attachment.filename == filename:
                return attachment
        raise KeyError(f"message {self.id} has no attachment {filename!r}")

    def payload(self, base_url: str) -> dict[str, Any]:
        """The message object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "type": 0,
            "author": self.author.payload(), "content": self.content,
            "timestamp": _iso(self.created), "edited_timestamp": _iso(self.edited) if self.edited else None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [a.payload(base_url) for a in self.attachments],
            "embeds": list(self.embeds), "pinned": False, "flags": self.flags, "components": [],
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        return data


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


class MessageStore:
    """Every message and attachment posted to the fake, by channel and by id."""

    def __init__(self, changes: threading.Condition) -> None:
        self.changes = changes
        self._by_id: dict[int, Message] = {}
        self._by_channel: dict[int, list[int]] = {}
        self._attachments: dict[int, Attachment] = {}

    def new_attachment(self, channel_id: int, filename: str, data: bytes, *,
                       content_type: str | None = None, description: str | None = None) -> Attachment:
        """Store uploaded bytes as a downloadable attachment."""
        attachment = Attachment(snowflake(), channel_id, filename, data, content_type, description)
        with self.changes:
            self._attachments[attachment.id] = attachment
        return attachment

    def attachment(self, attachment_id: int) -> Attachment | None:
        """The attachment with this id, if any."""
        return self._attachments.get(attachment_id)

    def put(self, message: Message) -> Message:
        """Store a new message or a new version of an existing one, and wake waiters."""
        with self.changes:
            if message.id not in self._by_id:
                self._by_channel.setdefault(message.channel_id, []).append(message.id)
            self._by_id[message.id] = message
            self.changes.notify_all()
        return message

    def delete(self, message_id: int) -> None:
        """Remove a message (its attachments stay downloadable, as on Discord's CDN)."""
        with self.changes:
            message = self._by_id.pop(message_id, None)
            if message is not None:
                self._by_channel[message.channel_id].remove(message_id)
            self.changes.notify_all()

    def get(self, message_id: int) -> Message | None:
        """The latest version of a message."""
        return self._by_id.get(message_id)

    def in_channel(self, channel_id: int) -> list[Message]:
        """Latest versions of the messages in a channel, oldest first."""
        with self.changes:
            return [self._by_id[i] for i in self._by_channel.get(channel_id, [])]


@dataclass(frozen=True)
class Reply:
    """One answer to an interaction, in the order the bot sent them.

    `kind` is "callback" (the initial response; `type` is Discord's callback type:
    4 message, 5 deferred, 6 deferred update, 7 update), "followup" (a new message
    through the interaction webhook) or "edit" (an edit of @original or of a
    follow-up). `message` is that message as it stood right after this reply.
    """

    kind: str
    type: int | None
    message: Message | None

    @property
    def deferred(self) -> bool:
        """True for a "thinking..." deferral (types 5 and 6)."""
        return self.kind == "callback" and self.type in (5, 6)


class InteractionRecord:
    """A slash command the fake delivered to the bot, and everything the bot answered.

    Waiting methods block the calling thread; from inside an asyncio loop call them
    through `asyncio.to_thread` so the loop (and the bot on it) keeps running.
    """

    def __init__(self, changes: threading.Condition, *, id: int, token: str, name: str,
                 guild_id: int, channel_id: int, user_id: int) -> None:
        self._changes = changes
        self.id = id
        self.token = token
        self.name = name
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.user_id = user_id
        self._replies: list[Reply] = []
        #: Message id of @original once the initial response created one.
        self.original_id: int | None = None

    def __repr__(self) -> str:
        return f"<InteractionRecord /{self.name} id={self.id} replies={len(self._replies)}>"

    @property
    def responded(self) -> bool:
        """True once the initial callback arrived."""
        return bool(self._replies)

    def add_reply(self, reply: Reply) -> None:
        """Record an answer (fake side) and wake waiters."""
        with self._changes:
            self._replies.append(reply)
            self._changes.notify_all()

    @property
    def replies(self) -> list[Reply]:
        """A copy of all answers so far."""
        with self._changes:
            return list(self._replies)

    def wait_response(self, timeout: float = 10.0) -> Reply:
        """The initial callback (a message, a deferral, or an update)."""
        return wait_until(self._changes, lambda: self._replies[0] if self._replies else None,
                          timeout, f"the response to /{self.name}")

    def wait_replies(self, count: int, timeout: float = 10.0) -> list[Reply]:
        """All answers once there are at least `count` of them."""
        return wait_until(self._changes, lambda: list(self._replies) if len(self._replies) >= count else None,
                          timeout, f"{count} replies to /{self.name}")

    def wait_message(self, predicate: Callable[[Message], bool] | None = None,
                     timeout: float = 10.0) -> Message:
        """The first visible answer (content, embeds or files, not a bare deferral)
        whose message satisfies `predicate`."""
        def probe() -> Message | None:
            for reply in self._replies:
                msg = reply.message
                if msg is None or not (msg.content or msg.embeds or msg.attachments):
                    continue
                if predicate is None or predicate(msg):
                    return msg
            return None
        return wait_until(self._changes, probe, timeout, f"a matching answer to /{self.name}")
