package client

import (
	"errors"
	"strings"

	"qpchat/node/store"
	"qpchat/rpc"
)

// The successor commitment stored with each server pin (rpc.SuccessorStore;
// rpc/succession.go explains key succession). It sits in the servers
// bucket under an HMAC of the address in its own domain.

var _ rpc.SuccessorStore = (*State)(nil)

func successorKey(tx *store.Tx, server string) []byte {
	return tx.Ident("server-next", []byte(strings.ToLower(server)))
}

// Successor implements rpc.SuccessorStore.
func (s *State) Successor(server string) (string, error) {
	var next string
	err := s.db.View(func(tx *store.Tx) error {
		v, err := tx.Bucket(bServers).Get(successorKey(tx, server))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		next = string(v)
		return err
	})
	return next, err
}

// SetSuccessor implements rpc.SuccessorStore.
func (s *State) SetSuccessor(server, next string) error {
	return s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bServers)
		if next == "" {
			return b.Delete(successorKey(tx, server))
		}
		return b.Put(successorKey(tx, server), []byte(next))
	})
}
