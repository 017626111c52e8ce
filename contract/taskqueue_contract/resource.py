"""The TaskQueue resource's identity: what the operator serves and the plugin reads."""

from __future__ import annotations

GROUP = "taskqueue.dev"
VERSION = "v1alpha1"
KIND = "TaskQueue"
PLURAL = "taskqueues"
SINGULAR = "taskqueue"
SHORT_NAMES = ("tq",)
API_VERSION = f"{GROUP}/{VERSION}"
