"""The `kubectl taskqueue` plugin: queue status, progress, dead letters and job history.

`main.py` parses and dispatches; `resolve.py` turns a TaskQueue into a Redis connection;
`records.py` (with `taskqueue_contract.job_data`) reads jobs without the application's
code; `dlq.py`,
`jobs.py` and `status.py` are the commands; `selectors.py` and `render.py` are pure.
"""
