package admission

import (
	"os"
	"runtime"
	"sync"
)

// ReserveIntake gives the Go scheduler one P more than the CPUs it was
// given, and returns those CPUs (the GOMAXPROCS before), for Config.CPUs.
// With GOMAXPROCS set in the environment it changes nothing: the operator
// chose.
//
// Why: admitted reads are bounded to about one per CPU (Config), and the
// spare P is then free for the work that comes before admission — reading
// requests, and refusing them. Without it, a request that arrives while
// every P runs an admitted read is not even seen: the runtime polls the
// network only when a P runs out of work (or every 10 ms, from its
// monitor), and the read's P then takes the next admitted read first. On
// an overloaded server the refusals then wait as long as the admitted
// reads. With the spare P, the thread that owns it sleeps in the network
// poller and the kernel wakes it when a request arrives, ahead of the
// threads running reads.
//
// Call it once, at the start of a process that serves reads, before
// anything reads GOMAXPROCS. It also stops the runtime from following a
// change of the container's CPU limit (as any explicit GOMAXPROCS does).
//
// Later calls change nothing and return what the first returned.
func ReserveIntake() (cpus int) {
	return reserved()
}

var reserved = sync.OnceValue(func() int {
	cpus := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(cpus + 1)
	}
	return cpus
})
