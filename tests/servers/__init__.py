"""Real servers for the test suite, started by the project itself when not running.

Each module provides session-scoped pytest fixtures for one server and is loaded as a
plugin from ``tests/conftest.py``. Rules every fixture keeps:

* reuse the machine's server when it is up, else install (cached) and start a private
  one on a free port, and stop what it started;
* wait for readiness by polling, never by sleeping a fixed time;
* a server that cannot start fails the test with the reason: nothing is skipped.
"""
