"""Parts of the full-path load benchmark (``python -m tests.bench load``).

probes: CPU, RSS and kernel UDP drops of a process, from /proc.
stage: the loopback Discord with a load world and its generator, in this process.
ourbot: the real ``python -m bot`` driven by slash commands.
vrecv: discord-ext-voice-recv in its own venv, run by vrecv_runner.py.
"""
