//go:build !linux

package qdrantproc

import "syscall"

// sysProcAttr: without Pdeathsig, only an explicit stop ends a child.
func sysProcAttr() *syscall.SysProcAttr { return nil }
