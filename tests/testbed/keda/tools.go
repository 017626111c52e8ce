//go:build tools

// Package tools records the KEDA main packages the test bed compiles (the operator and
// the metrics API server), so that `go mod tidy` keeps every module they need.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
