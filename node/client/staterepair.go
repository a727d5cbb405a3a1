package client

// Repair of damaged records in the client's state (State.Check): a record
// that fails authentication or does not parse costs what it held, not the
// profile. The losses are written to the history as EventLost entries, so
// the user is told once; the repair makes the next Check clean.

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"qpchat/node/store"
)

// stateDamage is what a scan of the state found.
type stateDamage struct {
	fatal    error    // damage that leaves no usable profile
	profile  [][]byte // damaged profile keys that can be rebuilt (last-seq, read-seq)
	events   [][]byte // damaged history entries (keys)
	groups   [][]byte // damaged group records (keys)
	kps      [][]byte // damaged KeyPackage private keys (keys)
	names    [][]byte // damaged group-name records (keys)
	seen     [][]byte // damaged records of applied messages (keys)
	approved [][]byte // damaged device approvals (keys)
	pins     int      // damaged pins (servers, peers): kept, they fail closed
}

func (d *stateDamage) repairable() bool {
	return len(d.profile)+len(d.events)+len(d.groups)+len(d.kps)+len(d.names)+len(d.seen)+len(d.approved) > 0
}

// damaged reports whether a record failed to open (err) or to parse.
func damaged(err error, v []byte, parse func([]byte) error) (bool, error) {
	switch {
	case errors.Is(err, store.ErrCorrupt):
		return true, nil
	case err != nil:
		return false, err
	case v == nil || parse == nil:
		return false, nil // a nested bucket, or a value of any form
	}
	return parse(v) != nil, nil
}

// scanBucket lists the keys of damaged records in bucket name.
func scanBucket(tx *store.Tx, name []byte, parse func([]byte) error) ([][]byte, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("client: state bucket %s missing: %w", name, store.ErrCorrupt)
	}
	var out [][]byte
	c := b.Cursor()
	for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
		bad, err := damaged(err, v, parse)
		if err != nil {
			return nil, err
		}
		if bad {
			out = append(out, k)
		}
	}
	return out, nil
}

func parseSeq(v []byte) error {
	if _, ok := store.ParseSeqKey(v); !ok {
		return errRecord
	}
	return nil
}

// scanState opens every record of the state.
func scanState(tx *store.Tx) (*stateDamage, error) {
	d := &stateDamage{}
	profile, err := scanBucket(tx, bProfile, func(v []byte) error { return nil })
	if err != nil {
		return nil, err
	}
	for _, k := range profile {
		if bytes.Equal(k, kLastSeq) || bytes.Equal(k, kReadSeq) {
			d.profile = append(d.profile, k)
		} else {
			d.fatal = fmt.Errorf("client: the profile record %q is damaged: %w", k, store.ErrCorrupt)
		}
	}
	for _, k := range [][]byte{kLastSeq, kReadSeq} {
		if v, err := tx.Bucket(bProfile).Get(k); err == nil && parseSeq(v) != nil {
			d.profile = append(d.profile, k)
		}
	}
	for _, s := range []struct {
		name  []byte
		out   *[][]byte
		parse func([]byte) error
	}{
		{bEvents, &d.events, func(v []byte) error { _, err := parseEvent(v); return err }},
		{bGroups, &d.groups, func(v []byte) error { _, err := parseGroup(v); return err }},
		{bKPs, &d.kps, func(v []byte) error { _, err := parseKP(v); return err }},
		{bNames, &d.names, nil},
		{bSeen, &d.seen, nil},
		{bApproved, &d.approved, nil},
	} {
		if *s.out, err = scanBucket(tx, s.name, s.parse); err != nil {
			return nil, err
		}
	}
	for _, name := range [][]byte{bServers, bPeers} {
		bad, err := scanBucket(tx, name, nil)
		if err != nil {
			return nil, err
		}
		d.pins += len(bad)
	}
	return d, nil
}

// repairState repairs what d found, in tx, and records the losses in the
// history.
func repairState(tx *store.Tx, d *stateDamage) error {
	now := time.Now().Unix()
	var lost []*Event
	note := func(format string, args ...any) {
		lost = append(lost, &Event{Kind: EventLost, Time: now, Text: fmt.Sprintf(format, args...)})
	}
	// History entries: a placeholder keeps their position.
	if len(d.events) > 0 {
		var seqs []string
		for _, k := range d.events {
			n, _ := store.ParseSeqKey(k)
			ph := &Event{Kind: EventLost, Time: now, Text: "this history entry was damaged in this device's state and is lost"}
			if err := tx.Bucket(bEvents).Put(k, ph.marshal()); err != nil {
				return err
			}
			seqs = append(seqs, strconv.FormatUint(n, 10))
		}
		note("%d history entr%s damaged in this device's state and lost: #%s", len(seqs), plural(len(seqs), "y was", "ies were"), strings.Join(seqs, ", #"))
	}
	// Groups: their names go with them (a name record's key is an HMAC
	// of the name, so the lost group cannot be named).
	names := tx.Bucket(bNames)
	if len(d.groups) > 0 {
		c := names.Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil || v == nil {
				continue
			}
			gk := tx.Ident("group", v)
			for _, dk := range d.groups {
				if bytes.Equal(dk, gk) {
					d.names = append(d.names, k)
				}
			}
		}
	}
	for _, k := range d.names {
		if err := names.Delete(k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	for _, k := range d.groups {
		if err := tx.Bucket(bGroups).Delete(k); err != nil {
			return err
		}
	}
	if len(d.groups) > 0 {
		note("the state of %d group%s was damaged in this device's state and is lost; this device left %s: a member must remove and re-add it",
			len(d.groups), plural(len(d.groups), "", "s"), plural(len(d.groups), "it", "them"))
	}
	// Intact groups whose name record was lost get it back.
	if len(d.names) > 0 {
		var restore []*groupRecord
		c := tx.Bucket(bGroups).Cursor()
		for k, v, err := c.First(); k != nil; k, v, err = c.Next() {
			if err != nil || v == nil {
				continue
			}
			if g, perr := parseGroup(v); perr == nil {
				if id, err := getGroupByName(tx, g.Name); err != nil || !bytes.Equal(id, g.ID) {
					restore = append(restore, g)
				}
			}
		}
		for _, g := range restore {
			name := uniqueName(tx, g.Name)
			if name != g.Name {
				g.Name = name
				if err := putGroup(tx, g); err != nil {
					return err
				}
			}
			if err := putGroupName(tx, name, g.ID); err != nil {
				return err
			}
		}
	}
	// A lost record of an applied message only means that an exact
	// resent copy of it shows as refused instead of being dropped.
	for _, k := range d.seen {
		if err := tx.Bucket(bSeen).Delete(k); err != nil {
			return err
		}
	}
	// A lost approval fails closed: the device is no longer approved here.
	for _, k := range d.approved {
		if err := tx.Bucket(bApproved).Delete(k); err != nil {
			return err
		}
	}
	if len(d.approved) > 0 {
		note("%d device approval%s damaged in this device's state and lost; approve the device again (approve-device) if it should be",
			len(d.approved), plural(len(d.approved), " was", "s were"))
	}
	for _, k := range d.kps {
		if err := tx.Bucket(bKPs).Delete(k); err != nil {
			return err
		}
	}
	if len(d.kps) > 0 {
		note("%d unused KeyPackage key%s damaged in this device's state and lost; an invitation that used one cannot be joined (ask to be invited again)",
			len(d.kps), plural(len(d.kps), " was", "s were"))
	}
	for _, k := range d.profile {
		switch {
		case bytes.Equal(k, kLastSeq):
			// Deliveries still queued at the node are fetched again; what
			// was applied already is refused as a replay by MLS.
			if err := tx.Bucket(bProfile).Put(kLastSeq, store.SeqKey(0)); err != nil {
				return err
			}
			note("the position in this device's queue was damaged in its state; deliveries still at the node are read again and may show as refused")
		case bytes.Equal(k, kReadSeq):
			// Mark everything before the repair as shown.
			if err := tx.Bucket(bProfile).Put(kReadSeq, store.SeqKey(tx.Bucket(bEvents).Sequence())); err != nil {
				return err
			}
			note("which history entries were shown was damaged in this device's state; older entries are marked shown (see them with the history)")
		}
	}
	for _, e := range lost {
		if err := appendEvent(tx, e); err != nil {
			return err
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
