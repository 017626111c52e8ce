from __future__ import annotations

import pytest
from factories import make_taskqueue
from taskqueue_operator.api.models import TaskQueue


@pytest.fixture
def taskqueue() -> TaskQueue:
    return make_taskqueue()
