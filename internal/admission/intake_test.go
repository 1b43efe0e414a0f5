package admission

import (
	"os"
	"runtime"
	"testing"
)

func TestReserveIntake(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	cpus := ReserveIntake()
	if cpus != before {
		t.Fatalf("ReserveIntake returned %d CPUs, GOMAXPROCS was %d", cpus, before)
	}
	want := before + 1
	if os.Getenv("GOMAXPROCS") != "" {
		want = before // the operator's choice stands
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("GOMAXPROCS %d after ReserveIntake, want %d", got, want)
	}
	if again := ReserveIntake(); again != cpus || runtime.GOMAXPROCS(0) != want {
		t.Fatalf("a second call returned %d and left GOMAXPROCS %d, want %d and %d", again, runtime.GOMAXPROCS(0), cpus, want)
	}
	l, err := New(Config{CPUs: cpus})
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.MaxConcurrent != cpus {
		t.Fatalf("default MaxConcurrent %d with %d CPUs, want one read per CPU", l.cfg.MaxConcurrent, cpus)
	}
}
