//go:build !linux

package bench

import "os/exec"

// setChildAttrs does nothing outside Linux: a benchmark killed without
// stopping its server leaves the server running.
func setChildAttrs(cmd *exec.Cmd) {}
