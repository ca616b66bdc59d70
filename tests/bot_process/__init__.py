"""End-to-end tests of the real bot process (``python -m bot``) against the loopback Discord."""
