//go:build linux

package qdranttest

import "syscall"

// sysProcAttr makes the kernel kill Qdrant when the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
