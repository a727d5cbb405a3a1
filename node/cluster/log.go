package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Log is the cluster store's log (store.Log) on one JetStream stream:
// one subject, file storage, replicated, never truncated (no limits;
// deleting and purging messages are refused by the stream itself). Entry
// n of the log is the stream's message with sequence number n. Entries
// are write sets of the store: sealed values under clear schema names and
// HMAC'd identifiers, so neither the stream nor its subject names a user,
// device or group.
type Log struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	name     string
	subject  string
	maxEntry int
}

// DefaultStream is the stream name of a qpchat cluster store.
const DefaultStream = "qpchat-store"

// subjectOf is the one subject of a log's stream.
func subjectOf(stream string) string { return "qpchat.log." + stream }

// OpenLog binds to the stream name through nc, creating it with the given
// number of replicas if it does not exist. It retries while the
// JetStream cluster is still forming (no meta leader yet), until ctx ends.
func OpenLog(ctx context.Context, nc *nats.Conn, name string, replicas int) (*Log, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// The entry limit leaves room for the publish's headers.
	maxEntry := int(nc.MaxPayload()) - 4096
	if maxEntry <= 0 {
		return nil, fmt.Errorf("cluster: the NATS server's max_payload of %d bytes is too small", nc.MaxPayload())
	}
	cfg := jetstream.StreamConfig{
		Name:        name,
		Description: "qpchat cluster store log",
		Subjects:    []string{subjectOf(name)},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxMsgSize:  int32(maxEntry),
		DenyDelete:  true,
		DenyPurge:   true,
	}
	stream, err := openStream(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: opening the log stream %s: %w", name, err)
	}
	return &Log{js: js, stream: stream, name: name, subject: subjectOf(name), maxEntry: maxEntry}, nil
}

// attempt bounds one request to the stream's leader: a request sent to
// a leader that just died is never answered, and the retry reaches the
// new one.
const attempt = 2 * time.Second

// retryable reports whether a failed request may have gone to a leader
// that is gone or not yet elected.
func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// pause waits a little before a retry; false if ctx ended.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

// info asks the stream's leader for the stream's state, retrying until
// ctx ends.
func (l *Log) info(ctx context.Context) (*jetstream.StreamInfo, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		info, err := l.stream.Info(actx)
		cancel()
		if err == nil {
			return info, nil
		}
		if !retryable(err) || !pause(ctx) {
			return nil, fmt.Errorf("cluster: log stream info: %w", err)
		}
	}
}

// Info returns the stream's configuration and state.
func (l *Log) Info(ctx context.Context) (*jetstream.StreamInfo, error) { return l.info(ctx) }

// ID names the stream and the moment it was created, so that a replica
// never follows a stream deleted and made again under the same name.
func (l *Log) ID(ctx context.Context) (string, error) {
	info, err := l.info(ctx)
	if err != nil {
		return "", err
	}
	return l.name + "@" + info.Created.UTC().Format(time.RFC3339Nano), nil
}

// errNoLeader: the stream has no leader (no quorum); its members answer
// stream info with their own, possibly stale, state.
var errNoLeader = errors.New("cluster: the log stream has no leader (no quorum)")

// Last asks the stream's leader for its last sequence number. An answer
// from a member while the stream has no leader is not good enough: Last
// retries until a leader answers or ctx ends.
func (l *Log) Last(ctx context.Context) (uint64, error) {
	for {
		info, err := l.info(ctx)
		if err != nil {
			return 0, err
		}
		if info.Cluster == nil || info.Cluster.Leader != "" {
			return info.State.LastSeq, nil
		}
		if !pause(ctx) {
			return 0, fmt.Errorf("%w: %w", errNoLeader, ctx.Err())
		}
	}
}

// Append publishes entry with the expected-last-sequence header: the
// stream's leader stores it only if its last sequence is expect, and acks
// once the stream's replicas have it (a quorum). A publish that goes
// unanswered (the leader died) is sent again with the same message id
// until ctx ends: if the first one was stored, JetStream's duplicate
// detection answers with its sequence number instead of storing it twice.
// If ctx ends first, the entry may or may not be in the log.
func (l *Log) Append(ctx context.Context, entry []byte, expect uint64) (uint64, bool, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return 0, false, err
	}
	msgID := hex.EncodeToString(id)
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		ack, err := l.js.PublishMsg(actx, &nats.Msg{Subject: l.subject, Data: entry},
			jetstream.WithMsgID(msgID), jetstream.WithExpectStream(l.name), jetstream.WithExpectLastSequence(expect))
		cancel()
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, false, nil
		}
		if err == nil {
			return ack.Sequence, true, nil
		}
		if !retryable(err) || !pause(ctx) {
			return 0, false, fmt.Errorf("cluster: appending to the log (the entry may or may not be in it): %w", err)
		}
	}
}

// Follow reads the stream from after+1 with an ordered consumer (which
// recreates itself after a failure or a gap, from where it was) and hands
// fn the runs of consecutive entries that have arrived.
func (l *Log) Follow(ctx context.Context, after uint64, fn func(first uint64, entries [][]byte) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cluster: following the log: %w", err)
	}
	type entry struct {
		seq  uint64
		data []byte
	}
	const batch = 256
	msgs := make(chan entry, batch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		select {
		case msgs <- entry{md.Sequence.Stream, m.Data()}:
		case <-ctx.Done():
		}
	},
		jetstream.PullMaxMessages(batch),
		// A consumer hosted by a server that went down is noticed after
		// two missed heartbeats and made again on the stream's new leader.
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(500*time.Millisecond))
	if err != nil {
		return fmt.Errorf("cluster: following the log: %w", err)
	}
	defer cc.Stop()
	next := after + 1
	var first uint64
	var run [][]byte
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := fn(first, run)
		run = nil
		return err
	}
	add := func(e entry) error {
		if e.seq < next {
			return nil // delivered again after a reset
		}
		if e.seq != next { // a gap: hand over what we have, then the rest; the store sees it
			if err := flush(); err != nil {
				return err
			}
		}
		if len(run) == 0 {
			first = e.seq
		}
		run = append(run, e.data)
		next = e.seq + 1
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-msgs:
			if err := add(e); err != nil {
				return err
			}
		}
	drain:
		for len(run) < batch {
			select {
			case e := <-msgs:
				if err := add(e); err != nil {
					return err
				}
			default:
				break drain
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// MaxEntry is the largest entry the log takes: the NATS connection's
// max_payload, less room for headers.
func (l *Log) MaxEntry() int { return l.maxEntry }

// Status is a node's view of the log stream, for its metrics.
type Status struct {
	// Server is the NATS server this node's connection is on (the
	// embedded server's name, or the --nats server's).
	Server string
	// Leader is the stream leader's server name ("" without a quorum).
	Leader string
	// LastSeq is the log's last entry as the answering server has it.
	LastSeq uint64
	// Replicas are the stream's other members as the leader sees them.
	Replicas []Replica
}

// Replica is a member of the log stream other than its leader.
type Replica struct {
	Name    string
	Current bool          // caught up with the leader
	Offline bool          // not heard from
	Active  time.Duration // since the leader last heard from it
	Lag     uint64        // entries behind the leader
}

// Status asks the stream for its state and its members', once, within
// ctx.
func (l *Log) Status(ctx context.Context) (Status, error) {
	st := Status{Server: l.js.Conn().ConnectedServerName()}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("cluster: log stream info: %w", err)
	}
	st.LastSeq = info.State.LastSeq
	if info.Cluster != nil {
		st.Leader = info.Cluster.Leader
		for _, p := range info.Cluster.Replicas {
			if p == nil {
				continue
			}
			st.Replicas = append(st.Replicas, Replica{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active, Lag: p.Lag})
		}
	}
	return st, nil
}

// openStream opens the stream of cfg, creating it if it does not exist,
// and retries until its leader answers or ctx ends. Requests made before
// the JetStream cluster has a leader go unanswered, so each attempt is
// bounded; nodes that start together may race to create the stream, so
// it waits until the stream's leader answers.
func openStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		stream, err := js.Stream(actx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			stream, err = js.CreateStream(actx, cfg)
		}
		if err == nil {
			_, err = stream.Info(actx)
		}
		cancel()
		if err == nil {
			return stream, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
