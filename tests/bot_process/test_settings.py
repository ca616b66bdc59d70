"""/settings: a server's own settings, Manage Server only, within the operator's limits,
kept in the index across restarts; the server's retention decides expiry and the sweep."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.fakediscord.server import FakeDiscord

from .checks import download_link, http_get, recording_id, refusal
from .conftest import REPLY_TIMEOUT, BotProcess

_MANAGERS_ONLY = "Only members with Manage Server may see or change the settings."


def _add_role_to(fake: FakeDiscord, role_name: str, member_name: str) -> int:
    """A new role in the default guild, given to one member (before the bot starts)."""
    def build() -> int:
        guild = fake.world.guilds[fake.config["guild_id"]]
        role = fake.world.add_role(guild, role_name)
        guild.members[fake.config["members"][member_name]].role_ids.append(role.id)
        return role.id
    return fake.run(build)


def test_managers_change_the_settings_within_the_operators_limits_and_they_last(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    hosts = _add_role_to(fake, "Hosts", "alice")
    bot = start_bot(RETENTION_DAYS="30")
    for user in ("nobody", "recorder"):  # the operator's recorder role does not reach the settings
        assert refusal(bot.ask("settings", "show", user=user)) == _MANAGERS_ONLY
        assert refusal(bot.ask("settings", "format", {"value": "flac"}, user=user)) == _MANAGERS_ONLY
    shown = refusal(bot.ask("settings", "show"))
    assert shown.splitlines()[1:] == [
        "Who may record: Manage Server or **Recorder** (the bot's default)",
        "Recordings kept: 30 days (the bot's default); at most 30 days",
        "Default download format: wav",
        "Stop summary attaches the files: yes",
        "Autorecord: off",
    ], shown

    for value, answer in (("45", "This bot keeps recordings at most 30 days; choose that or less."),
                          ("forever", "This bot keeps recordings at most 30 days, so not forever."),
                          ("soon", "Retention is a number of days or `forever`, not `soon`."),
                          ("0", "Retention must be more than 0 days."),
                          ("nan", "Retention must be more than 0 days.")):
        assert refusal(bot.ask("settings", "retention", {"days": value})) == answer, value
    assert "Recordings kept: 7 days; at most 30 days" in refusal(bot.ask("settings", "retention", {"days": "7"}))
    assert "Default download format: flac" in refusal(bot.ask("settings", "format", {"value": "flac"}))
    assert "attaches the files: no" in refusal(bot.ask("settings", "attach-files", {"value": False}))
    assert "Who may record: Manage Server or **Hosts**" in refusal(
        bot.ask("settings", "recorder-role", {"role": hosts}))

    # The server's recorder role replaces the operator's: alice may record, "recorder" no longer.
    voice = fake.config["voice_channel_id"]
    rid = recording_id(bot.ask("record", "start", {"channel": voice}, user="alice"))
    assert refusal(bot.ask("record", "stop", user="recorder")) == \
        "Only members with Manage Server or the **Hosts** role may do that."
    stopped = bot.ask("record", "stop", user="alice")
    assert f"Recording `{rid}`" in stopped.content, stopped.content

    assert bot.terminate() == 0
    again = start_bot(RETENTION_DAYS="30")
    assert refusal(again.ask("settings", "show")).splitlines()[1:5] == [
        "Who may record: Manage Server or **Hosts**",
        "Recordings kept: 7 days; at most 30 days",
        "Default download format: flac",
        "Stop summary attaches the files: no",
    ]
    # An operator who lowers the limit binds the server at once.
    assert again.terminate() == 0
    lowered = start_bot(RETENTION_DAYS="3")
    assert "Recordings kept: 3 days; at most 3 days" in refusal(lowered.ask("settings", "show"))
    shown = refusal(lowered.ask("settings", "recorder-role", {"role": hosts, "remove": True}))
    assert "Who may record: Manage Server or **Recorder** (the bot's default)" in shown, shown
    assert "Default download format: wav" in refusal(lowered.ask("settings", "format", {"value": "default"}))


#: Ten seconds, as days.
SHORT_DAYS = 10.0 / 86400


def test_a_servers_shorter_retention_expires_its_recordings_and_the_sweep_deletes_them(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(RETENTION_DAYS="30")
    shown = refusal(bot.ask("settings", "retention", {"days": repr(SHORT_DAYS)}))
    assert "Recordings kept: 0.000115741 days; at most 30 days" in shown, shown
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    stopped = bot.ask("record", "stop")
    assert "The recording and its link are kept until " in stopped.content, stopped.content
    link = download_link(stopped)
    kept_until = re.search(r"kept until (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", stopped.content)
    assert kept_until, stopped.content
    status, page = http_get(link)
    # The page names the same end of life as the message: the server's retention, not the operator's.
    assert status == 200 and f"kept until {kept_until.group(1)}".encode() in page

    fake.wait_for(lambda: http_get(link)[0] == 404, timeout=REPLY_TIMEOUT, what="the link to expire")
    expired = refusal(bot.ask("recordings", "get", {"recording_id": rid}))
    assert expired.startswith(f"Recording `{rid}` has expired (recordings are kept 0.000115741 days"), expired
    assert (bot.recordings_dir / rid).is_dir()  # the hourly sweep has not come yet

    # The sweep at start-up deletes what the server's retention expired (the operator's 30 days would keep it).
    assert bot.terminate() == 0
    again = start_bot(RETENTION_DAYS="30")
    assert not (again.recordings_dir / rid).exists()
    assert refusal(again.ask("recordings", "list")) == "This server has no recordings."
