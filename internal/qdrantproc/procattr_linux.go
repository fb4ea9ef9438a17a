//go:build linux

package qdrantproc

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a
// terminal's Ctrl-C reaches only its parent, which then stops it, and makes
// the kernel kill it when the parent dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
