// Command echobot is a qpchat bot: it connects to the socket of a
// running `qpchat client daemon` and sends every text message it
// receives back to the group it came from. It uses the standard library
// only, so it doubles as a template for bots in any language: see
// docs/DAEMON.md for the protocol.
//
//	qpchat client --profile bot daemon &
//	go run ./examples/echobot --socket "$XDG_RUNTIME_DIR/qpchat/bot.sock"
//
// Do not put two echo bots in one group: each would answer the other
// forever.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
)

// line is one line from the daemon, a notification or a response; only
// the members the bot reads.
type line struct {
	ID     *int64          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// event is the params of a "receive" notification (the object
// `qpchat client recv --json` prints).
type event struct {
	Event  string `json:"event"`
	Group  string `json:"group"`
	Sender string `json:"sender"`
	Text   string `json:"text"`
}

func defaultSocket(profile string) string {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) {
		return filepath.Join(rt, "qpchat", profile+".sock")
	}
	return ""
}

func main() {
	profile := flag.String("profile", "default", "profile the daemon serves (to find its default socket)")
	socket := flag.String("socket", "", "the daemon's socket (default $XDG_RUNTIME_DIR/qpchat/PROFILE.sock)")
	prefix := flag.String("prefix", "", "text put before each echo")
	flag.Parse()
	if *socket == "" {
		*socket = defaultSocket(*profile)
	}
	if *socket == "" {
		log.Fatal("echobot: give --socket (XDG_RUNTIME_DIR is not set)")
	}
	if err := run(*socket, *prefix); err != nil {
		log.Fatal("echobot: ", err)
	}
}

func run(socket, prefix string) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(c) // one object per line
	var id int64
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64*1024), 8<<20) // a message may be a few MiB
	log.Printf("echobot: connected to %s", socket)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("the daemon wrote %q: %w", sc.Bytes(), err)
		}
		switch {
		case l.Method == "receive":
			var e event
			if err := json.Unmarshal(l.Params, &e); err != nil {
				return err
			}
			if e.Event != "message" || e.Text == "" {
				log.Printf("echobot: %s", l.Params) // joins, reconnections, ...
				continue
			}
			id++
			// The answer comes later as a line with this id; the bot
			// does not wait for it.
			req := map[string]any{"jsonrpc": "2.0", "id": id, "method": "send",
				"params": map[string]any{"group": e.Group, "text": prefix + e.Text}}
			if err := enc.Encode(req); err != nil {
				return err
			}
		case l.Error != nil:
			log.Printf("echobot: request %v failed: %d %s", idOf(l.ID), l.Error.Code, l.Error.Message)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the daemon closed the connection")
}

func idOf(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
