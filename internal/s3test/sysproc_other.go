//go:build !linux

package s3test

import (
	"os/exec"
	"syscall"
)

// spawn starts cmd in its own process group. Without Linux's Pdeathsig the
// server outlives a test binary that is killed; Cleanup still stops it when
// the tests end normally.
func spawn(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd.Start()
}
