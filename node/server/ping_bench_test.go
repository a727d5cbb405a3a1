package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkPing measures ping round trips over a real QUIC connection on
// loopback: one client connection, 1 or 64 callers sharing it. ns/op is
// the time per ping at that concurrency (so 1e9/ns_op pings/s).
func BenchmarkPing(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := startServer(b, testConfig(b))
			c := dial(b, s)
			if _, err := ping(c, 0); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			var (
				mu       sync.Mutex
				firstErr error
			)
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						if _, err := ping(c, uint64(n)); err != nil {
							mu.Lock()
							if firstErr == nil {
								firstErr = err
							}
							mu.Unlock()
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pings/s")
		})
	}
}
