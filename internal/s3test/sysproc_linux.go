package s3test

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// spawn starts cmd in its own process group, set to be killed when the test
// binary dies. The kernel sends the parent-death signal when the thread that
// forked the child exits, not the process, so all forks happen on one
// goroutine locked to a thread that never exits.
func spawn(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	spawnerOnce.Do(func() { go spawner() })
	res := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, res}
	return <-res
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan<- error
}

var (
	spawnReqs   = make(chan spawnReq)
	spawnerOnce sync.Once
)

func spawner() {
	runtime.LockOSThread() // never unlocked: the thread lives as long as the process
	for req := range spawnReqs {
		req.res <- req.cmd.Start()
	}
}
