package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fastKDF keeps tests quick; real files use DefaultKDF.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// Environment variables that turn the test binary into a helper process
// (a second process is the only safe way to hold a bbolt lock against this
// one, and the only way to crash a writer for real).
const (
	helperEnv = "QPCHAT_STORE_TEST_HELPER"
	helperDir = "QPCHAT_STORE_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(runWithBackend(m))
	case "hold":
		holdHelper(os.Getenv(helperDir))
	case "send":
		sendHelper(os.Getenv(helperDir))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(2)
	}
	os.Exit(0)
}

func keyOpts(dir string) Options {
	return Options{KeyFile: filepath.Join(dir, "key")}
}

// holdHelper opens the database, says "ready" and holds it until stdin closes.
func holdHelper(dir string) {
	db, err := Open(filepath.Join(dir, "db"), keyOpts(dir))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	db.Close()
}

// Devices used by the crash helper and the test that kills it.
var (
	crashSender   = []byte("sender-device-key-0123456789abcd")
	crashReceiver = []byte("receiver-device-key-0123456789ab")
	crashGroup    = []byte("crash-group-id-0123456789abcdefg")
)

// sendHelper sends messages from 8 goroutines as fast as it can and prints
// "ok WRITER N" after each Send returns, until it is killed.
func sendHelper(dir string) {
	s, err := OpenServer(filepath.Join(dir, "db"), keyOpts(dir), Limits{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; ; n++ {
				msg := fmt.Appendf(nil, "%d %d", w, n)
				if _, err := s.Send(context.Background(), SendRequest{Group: crashGroup, Sender: crashSender, Messages: [][]byte{msg}}); err != nil {
					fmt.Println("error:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("ok %d %d\n", w, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
