"""Fixtures of the worker integration tests; the helpers live in worker_processes.py
(a uniquely named module: test modules cannot safely import `conftest`)."""

from worker_processes import base_env, enqueue, start_worker

__all__ = ["base_env", "enqueue", "start_worker"]
