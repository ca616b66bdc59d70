-- The index exactly as the bot wrote it at commit e412ce1, before schema versions: RecordingStore's
-- _SCHEMA (bot/storage/index.py) then GUILD_SETTINGS_SCHEMA (bot/storage/guild_settings.py), verbatim.
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    guild_id INTEGER NOT NULL,
    guild_name TEXT NOT NULL,
    channel_id INTEGER NOT NULL,
    channel_name TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    secret TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_guild ON recordings (guild_id, started_at);
CREATE INDEX IF NOT EXISTS recordings_by_status ON recordings (status);
CREATE TABLE IF NOT EXISTS speakers (
    recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    display_name TEXT NOT NULL,
    PRIMARY KEY (recording_id, user_id)
);
CREATE TABLE IF NOT EXISTS suspensions (
    recording_id TEXT PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
    suspended_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    author_id INTEGER NOT NULL,
    author_name TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS opt_outs (
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id INTEGER PRIMARY KEY,
    recorder_role_ids TEXT NOT NULL DEFAULT '[]',
    retention_days REAL,
    download_format TEXT,
    attach_files INTEGER,
    autorecord_channel_ids TEXT NOT NULL DEFAULT '[]',
    autorecord_min_members INTEGER,
    autorecord_trigger_role_ids TEXT NOT NULL DEFAULT '[]',
    autorecord_post_channel_id INTEGER
);
