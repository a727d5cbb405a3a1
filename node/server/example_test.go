package server_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"qpchat/node/server"
)

// A node runs until interrupted; New prints nothing, so the caller shows
// the address and the fingerprint clients should pin.
func ExampleServer() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv, err := server.New(server.Config{Listen: ":7000", DataDir: "node-data"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listening on", srv.Addr(), "fingerprint", srv.Fingerprint())
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
