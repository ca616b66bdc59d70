"""The REST API of the loopback Discord (``/api/v10``) and attachment downloads.

Covers what discord.py's Client, app-command sync, interactions and messages
use. Replies carry Content-Type exactly ``application/json`` (discord.py treats
anything else, even with a charset, as text). Unknown routes answer 404 and are
logged at WARNING so gaps in the fake show up in test logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from .identify_limit import IdentifyLimit
from .interactions import CommandRegistry
from .messages import FLAG_EPHEMERAL, Attachment, InteractionRecord, Message, MessageStore, Reply
from .state import Guild, User, World, snowflake

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
#: Message flag of a deferred "thinking..." response.
FLAG_LOADING = 1 << 7
#: Uploads without a guild (DMs) use Discord's default limit.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered the way Discord does: status plus ``{"message", "code"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON reply with the exact Content-Type discord.py expects."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def _unknown(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


class Upload:
    """A message body: its JSON payload and the files sent with it (by form index)."""

    __slots__ = ("payload", "files")

    def __init__(self, payload: dict[str, Any], files: dict[int, tuple[str, str | None, bytes]]) -> None:
        self.payload = payload
        self.files = files

    @classmethod
    async def read(cls, request: web.Request) -> "Upload":
        """Parse a JSON or multipart (``payload_json`` + ``files[n]``) body."""
        if not request.content_type.startswith("multipart/"):
            body = await request.read()
            return cls(json.loads(body) if body else {}, {})
        payload: dict[str, Any] = {}
        files: dict[int, tuple[str, str | None, bytes]] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif part.name and part.name.startswith("files[") and part.name.endswith("]"):
                index = int(part.name[6:-1])
                content_type = part.headers.get("Content-Type")
                files[index] = (part.filename or f"file{index}", content_type, bytes(await part.read()))
            else:
                _log.warning("multipart field %r ignored", part.name)
        return cls(payload, files)


class RestApi:
    """Route handlers; shares the World, message store and command registry."""

    def __init__(self, world: World, store: MessageStore, commands: CommandRegistry, *,
                 token: str, bot_user: User, application_id: int, owner: User) -> None:
        self.world = world
        self.store = store
        self.commands = commands
        self._token = token
        self.bot_user = bot_user
        self.application_id = application_id
        self.owner = owner
        #: http://127.0.0.1:PORT, set by the server once bound (attachment URLs use it).
        self.base_url = ""
        #: ws:// gateway URL handed out by /gateway.
        self.gateway_url = ""
        #: Shard count answered by /gateway/bot.
        self.recommended_shards = 1
        #: The gateway's IDENTIFY rate limit, whose max_concurrency /gateway/bot reports (set by the server).
        self.identify_limit: IdentifyLimit | None = None
        #: Interactions delivered to the bot, by token.
        self.interactions: dict[str, InteractionRecord] = {}

    # -- plumbing -------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Add the routes and the error/auth middleware to `app`."""
        app.middlewares.append(self._middleware)
        p = API_PREFIX
        r = app.router
        r.add_get(p + "/users/@me", self.get_me)
        r.add_get(p + "/users/{user_id:\\d+}", self.get_user)
        r.add_get(p + "/oauth2/applications/@me", self.get_application)
        r.add_get(p + "/applications/@me", self.get_application)
        r.add_get(p + "/gateway", self.get_gateway)
        r.add_get(p + "/gateway/bot", self.get_gateway_bot)
        r.add_get(p + "/guilds/{guild_id}", self.get_guild)
        r.add_get(p + "/guilds/{guild_id}/channels", self.get_guild_channels)
        r.add_get(p + "/guilds/{guild_id}/roles", self.get_guild_roles)
        r.add_patch(p + "/guilds/{guild_id}/members/@me", self.patch_my_member)
        r.add_get(p + "/guilds/{guild_id}/members/{user_id:\\d+}", self.get_member)
        r.add_get(p + "/channels/{channel_id}", self.get_channel)
        r.add_post(p + "/channels/{channel_id}/typing", self.post_typing)
        r.add_get(p + "/channels/{channel_id}/messages", self.get_channel_messages)
        r.add_post(p + "/channels/{channel_id}/messages", self.post_channel_message)
        r.add_get(p + "/channels/{channel_id}/messages/{message_id}", self.get_channel_message)
        r.add_patch(p + "/channels/{channel_id}/messages/{message_id}", self.patch_channel_message)
        for path in ("/applications/{app_id}/commands", "/applications/{app_id}/guilds/{guild_id}/commands"):
            r.add_get(p + path, self.get_commands)
            r.add_put(p + path, self.put_commands)
        r.add_post(p + "/interactions/{interaction_id}/{token}/callback", self.post_callback)
        r.add_post(p + "/webhooks/{app_id}/{token}", self.post_followup)
        r.add_get(p + "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_webhook_message)
        r.add_patch(p + "/webhooks/{app_id}/{token}/messages/{message_id}", self.patch_webhook_message)
        r.add_delete(p + "/webhooks/{app_id}/{token}/messages/{message_id}", self.delete_webhook_message)
        r.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.get_attachment)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        needs_auth = path.startswith(API_PREFIX) and not path.startswith(
            (API_PREFIX + "/webhooks/", API_PREFIX + "/interactions/"))
        if needs_auth and request.headers.get("Authorization") != f"Bot {self._token}":
            _log.info("%s %s: 401 (missing or wrong bot token)", request.method, path)
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        try:
            return await handler(request)
        except ApiError as exc:
            _log.info("%s %s: %d %s", request.method, path, exc.status, exc)
            return json_response({"message": str(exc), "code": exc.code}, exc.status)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            _log.warning("fake Discord has no route for %s %s: answering 404", request.method, path)
            return json_response({"message": "404: Not Found", "code": 0}, 404)

    def _guild(self, request: web.Request) -> Guild:
        guild = self.world.guilds.get(_snowflake_arg(request, "guild_id"))
        if guild is None:
            raise _unknown("Guild", 10004)
        return guild

    def _channel_guild(self, channel_id: int) -> Guild:
        for guild in self.world.guilds.values():
            if channel_id in guild.channels:
                return guild
        raise _unknown("Channel", 10003)

    def _check_app(self, request: web.Request) -> None:
        if _snowflake_arg(request, "app_id") != self.application_id:
            raise _unknown("Application", 10002)

    def _interaction(self, request: web.Request) -> InteractionRecord:
        record = self.interactions.get(request.match_info["token"])
        if record is None:
            raise _unknown("Webhook", 10015)
        return record

    # -- identity -------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        """The bot user (discord.py's login)."""
        return json_response({**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def get_user(self, request: web.Request) -> web.Response:
        """Any user."""
        user = self.world.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise _unknown("User", 10013)
        return json_response(user.payload())

    async def get_application(self, request: web.Request) -> web.Response:
        """The bot's application info."""
        return json_response({
            "id": str(self.application_id), "name": self.bot_user.username, "description": "",
            "icon": None, "bot_public": True, "bot_require_code_grant": False,
            "owner": self.owner.payload(), "verify_key": "00" * 32, "team": None, "flags": 0,
            "summary": "", "rpc_origins": [], "bot": self.bot_user.payload(),
        })

    async def get_gateway(self, request: web.Request) -> web.Response:
        """Where the gateway is."""
        return json_response({"url": self.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """The gateway plus a shard count, for AutoShardedClient."""
        return json_response({
            "url": self.gateway_url, "shards": self.recommended_shards,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0,
                                    "max_concurrency": self.identify_limit.max_concurrency if self.identify_limit else 1},
        })

    # -- guilds and channels ----------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        """A guild (with approximate counts when asked)."""
        guild = self._guild(request)
        data = guild.payload()
        if request.query.get("with_counts") in ("1", "true", "True"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """A guild's channels."""
        return json_response([c.payload() for c in self._guild(request).channels.values()])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        """A guild's roles."""
        return json_response([r.payload() for r in self._guild(request).roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        """One member."""
        member = self._guild(request).members.get(int(request.match_info["user_id"]))
        if member is None:
            raise _unknown("Member", 10007)
        return json_response(member.payload())

    async def patch_my_member(self, request: web.Request) -> web.Response:
        """Change the bot's own nickname (published as GUILD_MEMBER_UPDATE)."""
        guild = self._guild(request)
        body = await request.json()
        if "nick" in body:
            member = self.world.set_nick(guild.id, self.bot_user.id, body["nick"] or None)
        else:
            member = guild.members[self.bot_user.id]
        return json_response(member.payload())

    async def get_channel(self, request: web.Request) -> web.Response:
        """One channel."""
        channel_id = _snowflake_arg(request, "channel_id")
        return json_response(self._channel_guild(channel_id).channels[channel_id].payload())

    async def post_typing(self, request: web.Request) -> web.Response:
        """Typing indicator: accepted, nothing to show."""
        self._channel_guild(_snowflake_arg(request, "channel_id"))
        return web.Response(status=204)

    # -- channel messages -------------------------------------------------------

    async def get_channel_messages(self, request: web.Request) -> web.Response:
        """Recent messages of a channel, newest first (as Discord lists them)."""
        channel_id = _snowflake_arg(request, "channel_id")
        self._channel_guild(channel_id)
        limit = int(request.query.get("limit", 50))
        messages = self.store.in_channel(channel_id)[::-1][:limit]
        return json_response([m.payload(self.base_url) for m in messages])

    async def post_channel_message(self, request: web.Request) -> web.Response:
        """The bot sends a message (JSON or multipart with files)."""
        channel_id = _snowflake_arg(request, "channel_id")
        guild = self._channel_guild(channel_id)
        upload = await Upload.read(request)
        message = self._new_message(upload, channel_id, guild)
        _log.info("message %d in channel %d: %d files", message.id, channel_id, len(message.attachments))
        return json_response(self.store.put(message).payload(self.base_url))

    def _channel_message(self, request: web.Request) -> Message:
        channel_id = _snowflake_arg(request, "channel_id")
        message = self.store.get(_snowflake_arg(request, "message_id"))
        if message is None or message.channel_id != channel_id:
            raise _unknown("Message", 10008)
        return message

    async def get_channel_message(self, request: web.Request) -> web.Response:
        """One message."""
        return json_response(self._channel_message(request).payload(self.base_url))

    async def patch_channel_message(self, request: web.Request) -> web.Response:
        """Edit one of the bot's messages."""
        message = self._channel_message(request)
        if message.author.id != self.bot_user.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        edited = self._edited(message, await Upload.read(request))
        return json_response(self.store.put(edited).payload(self.base_url))

    def _check_size(self, upload: Upload, guild: Guild | None) -> None:
        limit = guild.upload_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        total = sum(len(data) for _, _, data in upload.files.values())
        if total > limit:
            raise ApiError(413, 40005, "Request entity too large")

    def _new_files(self, upload: Upload, channel_id: int, wanted: list[dict[str, Any]] | None) -> list[Attachment]:
        """Attachments for the uploaded files (described by `wanted` when given)."""
        described = {}
        for entry in wanted or []:
            try:
                described[int(entry["id"])] = entry
            except (KeyError, ValueError):
                continue
        attachments = []
        for index, (filename, content_type, data) in sorted(upload.files.items()):
            entry = described.get(index, {})
            attachments.append(self.store.new_attachment(
                channel_id, entry.get("filename") or filename, data,
                content_type=content_type, description=entry.get("description")))
        return attachments

    def _new_message(self, upload: Upload, channel_id: int, guild: Guild | None, *,
                     webhook: bool = False, flags: int = 0) -> Message:
        self._check_size(upload, guild)
        payload = upload.payload
        return Message(
            id=snowflake(), channel_id=channel_id, guild_id=guild.id if guild else None,
            author=self.bot_user, content=payload.get("content") or "",
            embeds=tuple(payload.get("embeds") or ()),
            attachments=tuple(self._new_files(upload, channel_id, payload.get("attachments"))),
            flags=(int(payload.get("flags") or 0) & FLAG_EPHEMERAL) | flags,
            webhook_id=self.application_id if webhook else None,
            application_id=self.application_id if webhook else None,
            allowed_mentions=payload.get("allowed_mentions"),
        )

    def _edited(self, message: Message, upload: Upload) -> Message:
        guild = self.world.guilds.get(message.guild_id) if message.guild_id else None
        self._check_size(upload, guild)
        payload = upload.payload
        changes: dict[str, Any] = {"flags": message.flags & ~FLAG_LOADING}
        if "content" in payload:
            changes["content"] = payload["content"] or ""
        if "embeds" in payload:
            changes["embeds"] = tuple(payload["embeds"] or ())
        if "allowed_mentions" in payload:
            changes["allowed_mentions"] = payload["allowed_mentions"]
        new_files = self._new_files(upload, message.channel_id, payload.get("attachments"))
        if "attachments" in payload:
            keep = {str(entry.get("id")) for entry in payload["attachments"] or []}
            kept = [a for a in message.attachments if str(a.id) in keep]
        else:
            kept = list(message.attachments)
        changes["attachments"] = tuple(kept + new_files)
        return message.edit(**changes)

    async def get_attachment(self, request: web.Request) -> web.Response:
        """Download an attachment's bytes (what the bot's users would fetch from the CDN)."""
        attachment = self.store.attachment(_snowflake_arg(request, "attachment_id"))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="no such attachment")
        return web.Response(body=attachment.data,
                            content_type=attachment.content_type or "application/octet-stream")

    # -- application commands ---------------------------------------------------

    async def get_commands(self, request: web.Request) -> web.Response:
        """List registered commands."""
        self._check_app(request)
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        return json_response(self.commands.list(self.application_id, guild_id))

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk-overwrite commands (what `tree.sync()` sends)."""
        self._check_app(request)
        guild_id = None
        if "guild_id" in request.match_info:
            guild_id = self._guild(request).id
        commands = await request.json()
        return json_response(self.commands.overwrite(self.application_id, guild_id, commands))

    # -- interactions -------------------------------------------------------------

    async def post_callback(self, request: web.Request) -> web.Response:
        """The initial response to an interaction (``?with_response=1`` answer)."""
        record = self.interactions.get(request.match_info["token"])
        if record is None or str(record.id) != request.match_info["interaction_id"]:
            raise _unknown("interaction", 10062)
        if record.responded:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        upload = await Upload.read(request)
        kind = int(upload.payload.get("type", 0))
        data = Upload(upload.payload.get("data") or {}, upload.files)
        guild = self.world.guilds.get(record.guild_id)
        message: Message | None = None
        if kind == 4:
            message = self._new_message(data, record.channel_id, guild, webhook=True)
        elif kind == 5:
            message = self._new_message(data, record.channel_id, guild, webhook=True, flags=FLAG_LOADING)
        if message is not None:
            self.store.put(message)
            record.original_id = message.id
        record.add_reply(Reply("callback", kind, message))
        _log.info("interaction /%s answered with callback type %d", record.name, kind)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return json_response({
            "interaction": {
                "id": str(record.id), "type": 2,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": {"type": kind, **({"message": message.payload(self.base_url)} if message else {})},
        })

    async def post_followup(self, request: web.Request) -> web.Response:
        """A follow-up message; the first one after a deferral fills in @original."""
        self._check_app(request)
        record = self._interaction(request)
        if not record.responded:
            raise _unknown("Webhook", 10015)
        upload = await Upload.read(request)
        original = self.store.get(record.original_id) if record.original_id else None
        if original is not None and original.flags & FLAG_LOADING:
            message = self._edited(original, upload)
        else:
            guild = self.world.guilds.get(record.guild_id)
            message = self._new_message(upload, record.channel_id, guild, webhook=True)
        self.store.put(message)
        record.add_reply(Reply("followup", None, message))
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message.payload(self.base_url))
        return web.Response(status=204)

    def _webhook_message(self, request: web.Request, record: InteractionRecord) -> Message:
        raw = request.match_info["message_id"]
        message_id = record.original_id if raw == "@original" else int(raw) if raw.isdigit() else None
        message = self.store.get(message_id) if message_id else None
        if message is None or message.channel_id != record.channel_id or message.webhook_id is None:
            raise _unknown("Message", 10008)
        return message

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """@original or a follow-up."""
        self._check_app(request)
        record = self._interaction(request)
        return json_response(self._webhook_message(request, record).payload(self.base_url))

    async def patch_webhook_message(self, request: web.Request) -> web.Response:
        """Edit @original or a follow-up."""
        self._check_app(request)
        record = self._interaction(request)
        message = self._edited(self._webhook_message(request, record), await Upload.read(request))
        self.store.put(message)
        record.add_reply(Reply("edit", None, message))
        return json_response(message.payload(self.base_url))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """Delete @original or a follow-up (recorded as a "delete" reply)."""
        self._check_app(request)
        record = self._interaction(request)
        message = self._webhook_message(request, record)
        self.store.delete(message.id)
        record.add_reply(Reply("delete", None, message))
        return web.Response(status=204)


def _snowflake_arg(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise ApiError(400, 50035, f"Invalid Form Body: {name} is not snowflake")
    return int(raw)
