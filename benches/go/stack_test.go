// Go 1.19 side of gstack's benches/stack.rs and benches/switch.rs: the
// same stack-growth and switch figures, measured on the Go runtime.
// Run: cd benches/go && /usr/lib/go-1.19/bin/go test -bench . -benchtime 2s
package gstackbench

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// count is Go's BenchmarkStackCopy recursion (runtime/stack_test.go): no
// pointer into the stack anywhere.
//
//go:noinline
func count(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + count(n-1)
}

// countp is Go's BenchmarkStackCopyPtr recursion: every frame holds n, a
// pointer to a local of the outermost frame, which every stack copy must
// adjust in every frame.
//
//go:noinline
func countp(n *int) {
	if *n == 0 {
		return
	}
	*n--
	countp(n)
}

// rec mirrors gs_test_rec: every frame keeps its own value on the stack,
// a pointer to it, and a pointer to the outermost frame's value, and checks
// all three on the way back.  Returns the sum of 3k+1 over all levels, or
// -1 on a broken pointer.
//
//go:noinline
func rec(depth int, outer *int, outerValue int) int {
	own := 3*depth + 1
	p := &own
	if outer == nil {
		outer, outerValue = p, own
	}
	sum := 0
	if depth > 0 {
		sum = rec(depth-1, outer, outerValue)
		if sum < 0 {
			return sum
		}
	}
	if p != &own || *p != 3*depth+1 || *outer != outerValue {
		return -1
	}
	return sum + own
}

func recSum(d int) int { return 3*d*(d+1)/2 + d + 1 }

var depths = []int{10_000, 100_000, 1_000_000}

func depthName(d int) string {
	if d%1_000_000 == 0 {
		return fmt.Sprintf("%dM", d/1_000_000)
	}
	return fmt.Sprintf("%dk", d/1000)
}

// kinds: the three recursions, each run to depth d and checked.
var kinds = []struct {
	name string
	run  func(d int)
}{
	{"plain", func(d int) {
		if count(d) != d {
			panic("count")
		}
	}},
	{"ptr", func(d int) {
		i := d
		countp(&i)
		if i != 0 {
			panic("countp")
		}
	}},
	{"rec", func(d int) {
		if rec(d, nil, 0) != recSum(d) {
			panic("rec")
		}
	}},
}

// BenchmarkGrow: a fresh goroutine (2 KiB starting stack) recurses to the
// depth and returns; timed from spawn to its end (Go's BenchmarkStackCopy
// and BenchmarkStackCopyPtr, at three depths).
func BenchmarkGrow(b *testing.B) {
	for _, k := range kinds {
		for _, d := range depths {
			k, d := k, d
			b.Run(k.name+"/"+depthName(d), func(b *testing.B) {
				c := make(chan bool)
				for i := 0; i < b.N; i++ {
					go func() {
						k.run(d)
						c <- true
					}()
					<-c
				}
			})
		}
	}
}

// BenchmarkPresized: the same recursions on a goroutine whose stack has
// already grown to hold them (one untimed run first; GC is off so the
// stack is not shrunk meanwhile).  Grow / Presized is the growth overhead.
func BenchmarkPresized(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, k := range kinds {
		for _, d := range depths {
			k, d := k, d
			b.Run(k.name+"/"+depthName(d), func(b *testing.B) {
				start, done := make(chan bool), make(chan bool)
				go func() {
					k.run(d) // grow the stack
					done <- true
					<-start
					for i := 0; i < b.N; i++ {
						k.run(d)
					}
					done <- true
				}()
				<-done
				b.ResetTimer()
				start <- true
				<-done
			})
		}
	}
}

// BenchmarkGoschedPingPong: two goroutines calling runtime.Gosched on one
// P; one op is one Gosched of the benchmark goroutine, i.e. two switches.
func BenchmarkGoschedPingPong(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var stop int32
	done := make(chan bool)
	go func() {
		for atomic.LoadInt32(&stop) == 0 {
			runtime.Gosched()
		}
		done <- true
	}()
	runtime.Gosched() // let the partner start
	b.ResetTimer()
	t := time.Now()
	for i := 0; i < b.N; i++ {
		runtime.Gosched()
	}
	el := time.Since(t)
	b.StopTimer()
	atomic.StoreInt32(&stop, 1)
	<-done
	b.ReportMetric(float64(el.Nanoseconds())/float64(2*b.N), "ns/switch")
}

// BenchmarkChanRoundTrip: a value sent over an unbuffered channel to a
// partner goroutine and back over another, on one P; one op is a round
// trip (two switches).
func BenchmarkChanRoundTrip(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	ping <- 0
	<-pong
	b.ResetTimer()
	t := time.Now()
	for i := 0; i < b.N; i++ {
		ping <- i
		<-pong
	}
	el := time.Since(t)
	b.StopTimer()
	close(ping)
	<-pong
	b.ReportMetric(float64(el.Nanoseconds())/float64(2*b.N), "ns/switch")
}
