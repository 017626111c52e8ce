"""The test bed: a real control plane, a real containerd node and Redis, without Docker."""
