"""Parts of the full-path load benchmark (``python -m tests.bench load``, and ``shards``).

probes: CPU, RSS and kernel UDP drops of a process, from /proc.
stage: the loopback Discord with a load world (guilds taking turns over the gateway
    shards) and its generator, in this process.
ourbot: the real ``python -m bot`` driven by slash commands; several processes on
    disjoint shards driven as one.
vrecv: discord-ext-voice-recv in its own venv, run by vrecv_runner.py.
"""
