from __future__ import annotations

from taskqueue_operator.reconcile.drift import children_to_delete, drifted_paths


def test_defaults_added_by_the_server_are_not_drift() -> None:
    desired = {"spec": {"template": {"containers": [{"name": "w", "image": "a:1"}]}}}
    live = {
        "spec": {
            "template": {
                "containers": [{"name": "w", "image": "a:1", "terminationMessagePath": "/dev/x"}],
                "dnsPolicy": "ClusterFirst",
            }
        }
    }
    assert drifted_paths(desired, live) == []


def test_changed_image_is_drift() -> None:
    desired = {"spec": {"containers": [{"image": "a:1"}]}}
    live = {"spec": {"containers": [{"image": "evil:2"}]}}
    assert drifted_paths(desired, live) == [".spec.containers[0].image"]


def test_missing_and_extra_list_items_are_drift() -> None:
    assert drifted_paths({"env": [{"a": 1}]}, {"env": []}) == [".env"]
    assert drifted_paths({"env": [{"a": 1}]}, {"env": [{"a": 1}, {"b": 2}]}) == [".env"]
    assert drifted_paths({"x": {"y": 1}}, {}) == [".x"]


def test_quantities_compare_as_strings() -> None:
    assert drifted_paths({"cpu": 2}, {"cpu": "2"}) == []


def test_children_to_delete() -> None:
    assert children_to_delete({"a", "b", "c"}, {"a"}) == {"b", "c"}
