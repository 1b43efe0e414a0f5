package bench

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the server in a process group of its own, so that a
// Ctrl-C at the terminal reaches only the benchmark (which then stops the
// server in order), and has the kernel send it SIGTERM if the benchmark dies
// without stopping it.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
