"""The test bed's configuration: which images the process-kubelet can run, and how.

An image matches on its repository's last path component, without registry, tag or digest
(`ghcr.io/org/taskqueue-worker:0.1@sha256:..` -> `taskqueue-worker`). The value is the
image's entrypoint as argv; `command` in a pod replaces it and `args` follow it, as in
Kubernetes. argv[0] is looked up on a PATH that starts with this venv's bin directory.
Add or override entries with env TESTBED_IMAGE_MAP as JSON, e.g.
`TESTBED_IMAGE_MAP='{"my-app": ["my-app-serve"]}'`.
"""

from __future__ import annotations

import json
import os

IMAGE_MAP: dict[str, list[str]] = {
    "taskqueue-worker": ["taskqueue-worker"],
    "taskqueue-operator": ["taskqueue-operator"],
}
NODE_NAME = "testbed-node"


def image_map() -> dict[str, list[str]]:
    mapping = {key: list(argv) for key, argv in IMAGE_MAP.items()}
    extra = json.loads(os.environ.get("TESTBED_IMAGE_MAP") or "{}")
    if not isinstance(extra, dict) or not all(
        isinstance(v, list) and v and all(isinstance(a, str) for a in v) for v in extra.values()
    ):
        raise ValueError('TESTBED_IMAGE_MAP must map image names to argv lists: {"x": ["x"]}')
    mapping.update(extra)
    return mapping
