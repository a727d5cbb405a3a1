package server

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"qpchat/mls"
	"qpchat/node/bench"
)

func TestMetricsInTheLog(t *testing.T) {
	lb := &logBuffer{}
	w := newWorld(t, func(c *Config) {
		c.MetricsInterval = 20 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(lb, nil))
	})
	_, err := w.a1.Send(testCtx(t), w.group, [][]byte{
		bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, nil),
		bench.PrivateMessage(w.group, 1, mls.ContentTypeApplication, nil),
	})
	must(t, "send", err)
	deadline := time.Now().Add(10 * time.Second)
	for sumMetric(lb.String(), "sent_messages") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no metrics line with sent_messages=2 in the log:\n%s", lb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	log := lb.String()
	for key, want := range map[string]int{"registrations": 2, "device_auths": 4, "commits": 1, "sends": 1} {
		if got := sumMetric(log, key); got != want {
			t.Errorf("metrics lines count %s=%d, want %d", key, got, want)
		}
	}
	if strings.Contains(log, "alice") || strings.Contains(log, "bob") {
		t.Error("the log names a user")
	}
}

// sumMetric adds up key=N over every metrics line of log.
func sumMetric(log, key string) int {
	total := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "node metrics") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, _ := strconv.Atoi(v)
				total += n
			}
		}
	}
	return total
}

func TestShutdownAnswersFetchWait(t *testing.T) {
	lb := &logBuffer{}
	n := startNode(t, func(c *Config) {
		c.ShutdownTimeout = 5 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(lb, nil))
	})
	u := n.register("alice")
	d := n.addDevice(u)
	got := make(chan error, 1)
	go func() {
		_, _, err := d.FetchWait(testCtx(t), 0, 0, 20*time.Second)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it park
	n.stop()
	// The answer may or may not reach the client before the connection
	// closes; either way the call ended, and shutdown did not wait.
	<-got
	if strings.Contains(lb.String(), "calls still in flight after the shutdown timeout") {
		t.Error("shutdown waited out its timeout for a parked fetchWait")
	}
}
