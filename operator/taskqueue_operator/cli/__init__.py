"""The `kubectl taskqueue` plugin: queue status, progress, dead letters and job history.

`main.py` parses and dispatches; `resolve.py` turns a TaskQueue into a Redis connection;
`records.py` and `safe_pickle.py` read jobs without the application's code; `dlq.py`,
`jobs.py` and `status.py` are the commands; `selectors.py` and `render.py` are pure.
"""
