// Package clustertest starts in-process NATS JetStream clusters on
// loopback for tests: n embedded servers with routes to each other, each
// with its own data directory.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qpchat/internal/testport"
	"qpchat/node/cluster"
)

// Cluster is a running test cluster.
type Cluster struct {
	Name  string
	Nodes []*cluster.Node // nil while a node is stopped
	Conns []*nats.Conn    // in-process connection per node (nil while stopped)
	cfgs  []cluster.Config
}

// StartIn starts an n-node cluster with its data under dir and waits
// until JetStream has a leader. Stop it with Shutdown.
func StartIn(dir string, n int) (*Cluster, error) {
	// A route port taken by another process between the pick and the
	// server's listen fails the start; a fresh set of ports is tried
	// then (the data directories are still empty).
	var errs []error
	for range 3 {
		peers, err := testport.TCPAddrs(n)
		if err != nil {
			return nil, err
		}
		c, err := startIn(dir, peers)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	return nil, errors.Join(errs...)
}

// startIn starts a cluster whose nodes route on peers.
func startIn(dir string, peers []string) (*Cluster, error) {
	n := len(peers)
	c := &Cluster{Name: "qpchat-test", Nodes: make([]*cluster.Node, n), Conns: make([]*nats.Conn, n)}
	for i := range n {
		c.cfgs = append(c.cfgs, cluster.Config{
			Name:    fmt.Sprintf("n%d", i),
			Cluster: c.Name,
			Listen:  peers[i],
			Peers:   peers,
			DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i)),
		})
	}
	// Started together: each server waits for routes to its peers.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.Start(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// JetStream is ready once a stream can be made on it.
	l, err := cluster.OpenLog(ctx, c.Conns[0], "clustertest-ready", n)
	if err != nil {
		c.Shutdown()
		return nil, err
	}
	_ = l
	return c, nil
}

// Start tests the cluster with n nodes under t.TempDir(), shut down when
// the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartIn(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// DataDir is node i's data directory.
func (c *Cluster) DataDir(i int) string { return c.cfgs[i].DataDir }

// Config is node i's configuration.
func (c *Cluster) Config(i int) cluster.Config { return c.cfgs[i] }

// Start (re)starts node i with its configuration and data directory.
func (c *Cluster) Start(i int) error {
	if err := os.MkdirAll(c.cfgs[i].DataDir, 0o700); err != nil {
		return err
	}
	node, err := cluster.Start(c.cfgs[i])
	if err != nil {
		return err
	}
	nc, err := node.Connect()
	if err != nil {
		node.Shutdown()
		return err
	}
	c.Nodes[i], c.Conns[i] = node, nc
	return nil
}

// Stop stops node i (its data stays).
func (c *Cluster) Stop(i int) {
	if c.Conns[i] != nil {
		c.Conns[i].Close()
		c.Conns[i] = nil
	}
	if c.Nodes[i] != nil {
		c.Nodes[i].Shutdown()
		c.Nodes[i] = nil
	}
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.Nodes {
		c.Stop(i)
	}
}

// Log opens (creating it if needed) the log stream name, replicated on
// every node, through node i.
func (c *Cluster) Log(t testing.TB, i int, name string) *cluster.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := cluster.OpenLog(ctx, c.Conns[i], name, min(3, len(c.Nodes)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
