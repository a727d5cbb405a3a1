package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"qpchat/node/store"
)

// A node opens its store, registers two users with a device each, makes a
// group and delivers a message.
func Example() {
	dir, _ := os.MkdirTemp("", "qpchat-store-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := store.OpenServer(filepath.Join(dir, "node.db"), store.Options{KeyFile: filepath.Join(dir, "node.key")}, store.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	alice, bob := []byte("alice's device public key......."), []byte("bob's device public key........")
	for user, dev := range map[string][]byte{"alice": alice, "bob": bob} {
		s.CreateAccount(ctx, store.Account{User: user, Record: []byte("OPAQUE record")})
		s.AddDevice(ctx, store.Device{User: user, Key: dev, Certificate: []byte("certificate")})
	}
	group := []byte("32 random bytes of a group id...")
	s.PutKeyPackages(ctx, bob, 1, []store.KeyPackage{{Ref: []byte("bob's KeyPackageRef"), Data: []byte("KeyPackage")}}, nil)
	kps, _ := s.FetchKeyPackages(ctx, alice, "bob", 1)
	s.CreateGroup(ctx, group, alice)
	s.Commit(ctx, store.CommitRequest{Group: group, Committer: alice, Epoch: 0,
		Message: []byte("commit adding bob"), Added: [][]byte{bob}, Welcome: []byte("Welcome"),
		KeyPackageRefs: [][]byte{kps[0].Ref}})
	s.Send(ctx, store.SendRequest{Group: group, Sender: alice, Messages: [][]byte{[]byte("hello")}})

	r, _ := s.Fetch(ctx, bob, 0, 100, 0)
	msgs := r.Messages
	for _, m := range msgs {
		fmt.Printf("%d kind=%d %s\n", m.Seq, m.Kind, m.Data)
	}
	s.Ack(ctx, bob, msgs[len(msgs)-1].Seq)
	r, _ = s.Fetch(ctx, bob, 0, 100, 0)
	msgs, st := r.Messages, r.Queue
	fmt.Println(len(msgs), st.Len)
	// Output:
	// 1 kind=3 Welcome
	// 2 kind=1 hello
	// 0 0
}
