"""The test bed: a real Kubernetes control plane, a real containerd node and Redis, without Docker."""
