// Go 1.19 side of gstack's benches/runtime.rs: channels, select, spawning,
// GC cycles over parked goroutines, and memory per parked goroutine.
// Run each group in a process of its own (dead goroutines are never freed
// in Go, and every GC cycle visits them; see BenchmarkGCParked):
//
//	cd benches/go
//	/usr/lib/go-1.19/bin/go test -run ParkedMemory -v
//	/usr/lib/go-1.19/bin/go test -run '^$' -bench GCParked
//	/usr/lib/go-1.19/bin/go test -run '^$' -bench 'Chan|Select|SpawnExit' -benchtime 2s
package gstackbench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkChan/unbuffered: a value to a partner goroutine and back over two
// unbuffered channels on one P; one op is a round trip (gstack:
// chan/unbuffered round trip).  (BenchmarkChanRoundTrip in stack_test.go
// is the same with an int.)
//
// BenchmarkChan/buffered64: a producer sends b.N values into a 64-slot
// channel, the benchmark goroutine receives them; one op is one value
// (gstack: chan/buffered(64) send+recv).
func BenchmarkChan(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	b.Run("unbuffered", func(b *testing.B) {
		ping, pong := make(chan uint64), make(chan uint64)
		go func() {
			for v := range ping {
				pong <- v + 1
			}
		}()
		ping <- 0
		<-pong
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ping <- uint64(i)
			<-pong
		}
		b.StopTimer()
		close(ping)
	})
	b.Run("buffered64", func(b *testing.B) {
		c := make(chan uint64, 64)
		n := b.N
		b.ResetTimer()
		go func() {
			for i := 0; i < n; i++ {
				c <- uint64(i)
			}
			close(c)
		}()
		var sum, got uint64
		for v := range c {
			sum += v
			got++
		}
		b.StopTimer()
		if got != uint64(n) {
			b.Fatal("lost values")
		}
	})
}

// BenchmarkSelect2RoundTrip: as the unbuffered round trip, but every
// receive on both sides is a blocking 2-case select (the partner's on two
// request channels used alternately, the benchmark goroutine's on the
// reply channel and one that never gets a value); sends are plain.  One P.
// (gstack: select/2 cases round trip.)
func BenchmarkSelect2RoundTrip(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	a, c, pong, never := make(chan uint64), make(chan uint64), make(chan uint64), make(chan uint64)
	go func() {
		for {
			select {
			case v, ok := <-a:
				if !ok {
					return
				}
				pong <- v + 1
			case v := <-c:
				pong <- v + 1
			}
		}
	}()
	round := func(i int) uint64 {
		if i&1 == 0 {
			a <- uint64(i)
		} else {
			c <- uint64(i)
		}
		select {
		case v := <-pong:
			return v
		case v := <-never:
			return v
		}
	}
	round(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round(i)
	}
	b.StopTimer()
	close(a)
}

// BenchmarkGCParked: one runtime.GC() with 10k / 100k goroutines blocked in
// a channel receive (gstack: gc/{10k,100k} chan-blocked root visitor), on
// GOMAXPROCS=1 (gstack's setting) and 2.  A Go cycle also marks the (small)
// heap and sweeps; it scans every goroutine's stack.  Go never frees a g:
// every goroutine that ever lived stays in allgs and is visited by every
// cycle, so run this in a process of its own (TestParkedMemory leaves 100k
// dead goroutines, BenchmarkSpawnExit/batch up to millions), and before
// BenchmarkSpawnExit in this file.
func BenchmarkGCParked(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		release := parkN(n)
		for _, procs := range []int{1, 2} {
			n, procs := n, procs
			b.Run(fmt.Sprintf("%dk/procs=%d", n/1000, procs), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				runtime.GC()
				b.ResetTimer()
				t := time.Now()
				for i := 0; i < b.N; i++ {
					runtime.GC()
				}
				el := time.Since(t)
				b.StopTimer()
				b.ReportMetric(float64(el.Nanoseconds())/float64(b.N)/float64(n), "ns/goroutine")
			})
		}
		release()
	}
}

// BenchmarkSpawnExit: spawn a goroutine that returns at once.
//
//   - wait-each: go func(){ wg.Done() }() then wg.Wait() every time: the
//     goroutine runs to its end before the next spawn (what gstack's
//     spawn+exit does with spawn + yield_now).
//   - batch: b.N times wg.Add(1); go func(){ wg.Done() }(), one Wait at the
//     end: the usual way this figure is taken in Go.
//   - chain: each goroutine spawns the next and exits (the runtime's own
//     BenchmarkCreateGoroutines).
//
// Each on GOMAXPROCS=1 (gstack's setting: one thread, one P) and 2.
func BenchmarkSpawnExit(b *testing.B) {
	for _, procs := range []int{1, 2} {
		procs := procs
		b.Run(fmt.Sprintf("wait-each/procs=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			var wg sync.WaitGroup
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				go func() { wg.Done() }()
				wg.Wait()
			}
		})
		b.Run(fmt.Sprintf("batch/procs=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			var wg sync.WaitGroup
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				go func() { wg.Done() }()
			}
			wg.Wait()
		})
		b.Run(fmt.Sprintf("chain/procs=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			done := make(chan bool)
			var f func(n int)
			f = func(n int) {
				if n == 0 {
					done <- true
					return
				}
				go f(n - 1)
			}
			go f(b.N)
			<-done
		})
	}
}

// parkN starts n goroutines blocked in a receive on one channel, and
// returns once every one of them is blocked; release() lets them end.
func parkN(n int) (release func()) {
	ch := make(chan struct{})
	var started, ended sync.WaitGroup
	started.Add(n)
	ended.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-ch
			ended.Done()
		}()
	}
	started.Wait()
	// Done comes just before the receive: let the last ones get there.
	time.Sleep(20 * time.Millisecond)
	return func() {
		close(ch)
		ended.Wait()
	}
}

func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// TestParkedMemory: 100,000 goroutines blocked on a channel; the memory
// they take (gstack: memory/parked 2KiB start).  runtime.ReadMemStats
// before and after (GC run first each time, so the heap figures are live
// data: g structs, sudogs, closures), and VmRSS.  Printed, not checked.
func TestParkedMemory(t *testing.T) {
	const n = 100_000
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	r0 := rss()
	release := parkN(n)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	r1 := rss()
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / n }
	fmt.Printf("Go %s: %d goroutines blocked in a channel receive (GOMAXPROCS=%d)\n",
		runtime.Version(), n, runtime.GOMAXPROCS(0))
	fmt.Printf("  StackInuse +%.0f B/goroutine, StackSys +%.0f B/goroutine\n",
		per(m0.StackInuse, m1.StackInuse), per(m0.StackSys, m1.StackSys))
	fmt.Printf("  HeapInuse +%.0f B/goroutine, HeapAlloc +%.0f B/goroutine (g structs, sudogs, closures)\n",
		per(m0.HeapInuse, m1.HeapInuse), per(m0.HeapAlloc, m1.HeapAlloc))
	fmt.Printf("  StackInuse + HeapInuse: +%.0f B/goroutine; Sys +%.0f B/goroutine\n",
		per(m0.StackInuse+m0.HeapInuse, m1.StackInuse+m1.HeapInuse), per(m0.Sys, m1.Sys))
	fmt.Printf("  VmRSS %d KiB -> %d KiB: +%.0f B/goroutine\n", r0/1024, r1/1024, per(r0, r1))
	release()
}
