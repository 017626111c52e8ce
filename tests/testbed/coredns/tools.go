//go:build tools

// Package tools records CoreDNS's main package, so that `go mod tidy` keeps what it needs.
package tools

import _ "github.com/coredns/coredns"
