"""RQ worker image: worker and enqueue entrypoints, result storage, example tasks."""
