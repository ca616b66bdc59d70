"""The receive-path fuzz campaign behind ``python -m tests.bench fuzz`` (see ``tests/bench/fuzz_bench.py``)."""
