"""A loopback Discord that an unmodified discord.py connects to over real sockets.

HTTP half: `server.FakeDiscord` (composition, test API), `rest` (/api/v10),
`gateway` (main websocket), `interactions` (slash commands), `messages`
(what the bot posted), `tlsca` (test CA), `state` (the World model).
Voice half: `voice`, `media`, `room`, `rtp`, `speakers`, `scenario`, `audio`,
`dave`. Standalone: ``python -m tests.fakediscord``.
"""
