"""Real local stand-ins for outside services (an SMS provider, an SMTP server, a webhook receiver).

They are servers on free loopback ports — the code under test talks to them over real sockets,
exactly as to the real thing — used by the tests and the benchmarks. Each has ``wait_for(count,
timeout)`` (waits on a condition with a deadline), ``stop()`` and a context manager.
"""
