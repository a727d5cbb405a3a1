package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/term"

	nc "qpchat/node/client"
)

// ChatCmd is an interactive chat in one group.
type ChatCmd struct {
	Group string `arg:"" help:"Group name."`
}

// Transport settings of chat. Keep-alives every chatKeepAlive keep a quiet
// connection open, so a node that vanishes (killed, network gone) is
// noticed after chatIdleTimeout instead of the default minute; a
// reconnection attempt gives up on the handshake after chatRedialTimeout
// and tries again after a back-off.
const (
	chatIdleTimeout   = 6 * time.Second
	chatKeepAlive     = 2 * time.Second
	chatRedialTimeout = 3 * time.Second
	chatWait          = 20 * time.Second
)

// Run reads lines from stdin and sends each; messages arriving meanwhile
// are printed as they come (fetchWait). On a terminal, typed text stays on
// a prompt line below what arrives, and chat runs until /quit, Ctrl-D or
// Ctrl-C; with piped stdin it sends every line, shows what arrived, and
// exits. When the node goes away, chat says "reconnecting…", keeps what
// is typed meanwhile, and sends it once reconnected.
func (c *ChatCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	lc, err := openLiveClient(g, f, p)
	if err != nil {
		return err
	}
	defer lc.st.Close()
	cl := lc.cl
	o := newOut(g, p)
	interactive := g.stdout == os.Stdout && term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	lines := make(chan string)
	if interactive {
		fd := int(os.Stdin.Fd())
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
		// The line editor redraws the prompt and the text being typed
		// below every line written through it.
		t := term.NewTerminal(struct {
			io.Reader
			io.Writer
		}{os.Stdin, os.Stdout}, "> ")
		o.w = t
		go func() {
			for {
				line, err := t.ReadLine()
				if err != nil { // Ctrl-D, Ctrl-C or a closed terminal
					close(lines)
					return
				}
				lines <- line
			}
		}()
	} else {
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	}
	startCtx, cancel := opContext(f)
	lv, err := lc.start(startCtx, g, f)
	if err != nil {
		cancel()
		return err
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for e := range lv.Events() {
			printLive(o, cl, e)
		}
	}()
	defer func() {
		if cerr := lv.Close(); err == nil && cerr != nil {
			err = cerr
		}
		<-printed
	}()
	// What is queued first (a Welcome to the group, maybe), then whether
	// the group exists.
	err = lv.Do(startCtx, func(ctx context.Context, cl *nc.Client) error {
		_, err := cl.Members(ctx, c.Group)
		return err
	})
	cancel()
	if err != nil {
		return err
	}

	if !o.json {
		o.emit(nil, "chatting in %s; type a message and Enter to send, /quit to leave", c.Group)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-lv.Done():
			return nil // Close returns why
		case line, ok := <-lines:
			if !ok || strings.TrimRight(line, "\r") == "/quit" {
				return finishChat(ctx, f, lv, interactive)
			}
			line = strings.TrimRight(line, "\r")
			if strings.TrimSpace(line) == "" {
				continue
			}
			err := lv.Send(c.Group, line)
			if errors.Is(err, nc.ErrOutboxFull) && !interactive {
				// Piped input waits for room rather than dropping lines.
				if err = lv.Flush(ctx); err == nil {
					err = lv.Send(c.Group, line)
				}
			}
			if err != nil {
				o.emit(map[string]any{"error": err.Error(), "text": line}, "could not send: %v", err)
			}
		}
	}
}

// finishChat sends what is still queued and, with piped input, shows
// what arrived meanwhile. An interactive chat waits --timeout for the
// outbox; piped input, which has no one to retype it, waits as long as
// a command does.
func finishChat(ctx context.Context, f *ClientFlags, lv *nc.Live, interactive bool) error {
	wait := f.Timeout
	if !interactive {
		wait = 6*f.Timeout + 30*time.Second
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := lv.Flush(fctx); err != nil {
		return fmt.Errorf("%d message(s) were not sent: %w", lv.Pending(), err)
	}
	if !interactive {
		return lv.Sync(fctx)
	}
	return nil
}

// printLive prints what a Live reports (liveRecord).
func printLive(o *out, cl *nc.Client, e nc.LiveEvent) {
	if r, ok := liveRecord(cl, e); ok {
		o.emitAll([]record{r})
	}
}
