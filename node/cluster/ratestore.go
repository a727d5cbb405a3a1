package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RateStore keeps the rate-limit buckets the nodes of a cluster share
// (server.RateStore) on a JetStream stream: one subject per bucket, only
// its last record kept, records gone an hour after their last write (a
// bucket gone is a full one). It lives in memory on its replicas, not on
// disk: rate-limit state is worth no fsync, and the whole cluster
// restarting at once only refills every bucket.
//
// Reads go to the stream's leader (no direct gets from a replica that
// may lag), and writes are compare-and-set on the subject's last
// sequence, which is the record's revision.
type RateStore struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string
}

// DefaultRateStream is the stream name of a qpchat cluster's rate limits.
const DefaultRateStream = "qpchat-limits"

// rateTTL is how long a record outlives its last write.
const rateTTL = time.Hour

// OpenRateStore binds to the stream name through nc, creating it with
// the given number of replicas if it does not exist; it retries while
// the JetStream cluster forms, until ctx ends.
func OpenRateStore(ctx context.Context, nc *nats.Conn, name string, replicas int) (*RateStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	prefix := "qpchat.limits." + name + "."
	cfg := jetstream.StreamConfig{
		Name:              name,
		Description:       "qpchat cluster rate-limit buckets",
		Subjects:          []string{prefix + ">"},
		Storage:           jetstream.MemoryStorage,
		Replicas:          replicas,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		MaxAge:            rateTTL,
		MaxMsgSize:        1024,
		Discard:           jetstream.DiscardOld,
	}
	stream, err := openStream(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: opening the rate-limit stream %s: %w", name, err)
	}
	return &RateStore{js: js, stream: stream, prefix: prefix}, nil
}

// subject is the subject of key, which must be a NATS token: letters,
// digits, '-' and '_' (the server's keys are HMACs in hex with a dot-free
// prefix).
func (r *RateStore) subject(key string) (string, error) {
	if key == "" || len(key) > 128 || strings.IndexFunc(key, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}) >= 0 || strings.Contains(key, "..") || key[0] == '.' || key[len(key)-1] == '.' {
		return "", fmt.Errorf("cluster: bad rate-limit key %q", key)
	}
	return r.prefix + key, nil
}

// Get returns the last record of key and its revision (its stream
// sequence), or (nil, 0, nil) if there is none.
func (r *RateStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	subj, err := r.subject(key)
	if err != nil {
		return nil, 0, err
	}
	m, err := r.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: reading a rate-limit bucket: %w", err)
	}
	return m.Data, m.Sequence, nil
}

// Swap stores value as the record of key if key's last record is still
// revision rev (0: none), returning the new revision, or 0 if another
// writer came first.
func (r *RateStore) Swap(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	subj, err := r.subject(key)
	if err != nil {
		return 0, err
	}
	ack, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: value},
		jetstream.WithExpectLastSequencePerSubject(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: writing a rate-limit bucket: %w", err)
	}
	return ack.Sequence, nil
}
