package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	nc "qpchat/node/client"
)

// ChatCmd is an interactive chat in one group.
type ChatCmd struct {
	Group string `arg:"" help:"Group name."`
}

// Run reads lines from stdin and sends each; messages arriving meanwhile
// are printed as they come (fetchWait). On a terminal it runs until
// /quit or end of input; with piped stdin it sends every line, shows what
// arrived, and exits.
func (c *ChatCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return err
	}
	defer cn.Close()
	o := newOut(g, p)
	var mu sync.Mutex // guards cn.c and o
	show := func() error {
		mu.Lock()
		defer mu.Unlock()
		evs, err := cn.c.Recv(ctx, 0)
		for _, e := range evs {
			printEvent(o, cn.c, e)
		}
		return err
	}
	if err := show(); err != nil {
		return err
	}
	if _, err := cn.c.Members(ctx, c.Group); err != nil {
		return err
	}
	if !o.json {
		o.emit(nil, "chatting in %s; type a message and Enter to send, /quit to leave", c.Group)
	}

	recvErr := make(chan error, 1)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go func() {
		for rctx.Err() == nil {
			got, err := cn.c.WaitForDelivery(rctx, 20*time.Second)
			if err != nil {
				if rctx.Err() != nil {
					return
				}
				recvErr <- err
				return
			}
			if got {
				if err := show(); err != nil {
					recvErr <- err
					return
				}
			}
		}
	}()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			return err
		case line, ok := <-lines:
			if !ok {
				rcancel()
				time.Sleep(200 * time.Millisecond) // let the node settle what we sent
				return show()
			}
			line = strings.TrimRight(line, "\r")
			if line == "/quit" {
				return nil
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			mu.Lock()
			err := cn.c.Send(ctx, c.Group, line)
			mu.Unlock()
			if errors.Is(err, nc.ErrUnknownGroup) {
				return err
			}
			if err != nil {
				o.emit(map[string]any{"error": err.Error()}, "could not send: %v", err)
			}
			// Sending syncs first; show what that brought in.
			if err := show(); err != nil {
				return err
			}
		}
	}
}
