//go:build !linux

package qdranttest

import "syscall"

// sysProcAttr: without Pdeathsig, t.Cleanup alone stops Qdrant.
func sysProcAttr() *syscall.SysProcAttr { return nil }
