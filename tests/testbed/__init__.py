"""The test bed: a real Kubernetes control plane, a process-kubelet and Redis, without Docker."""
