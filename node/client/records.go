package client

// Record encodings of the client state. Every record is
//
//	uint8 format (1) ‖ fields
//
// with byte fields prefixed by a uint32 length, integers big-endian and
// booleans as one byte 0 or 1. Decoders bound every length, reject
// trailing bytes and unknown formats, so a successful parse re-marshals to
// the same bytes.

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"qpchat/node/proto"
)

const recordFormat = 1

// maxField bounds one byte field of a record (an MLS group state of a
// large group is the largest).
const maxField = 1 << 26

var errRecord = errors.New("client: malformed state record")

type recWriter struct{ b cryptobyte.Builder }

func newRec() *recWriter {
	w := &recWriter{}
	w.b.AddUint8(recordFormat)
	return w
}

func (w *recWriter) bytes(v []byte) *recWriter {
	w.b.AddUint32(uint32(len(v)))
	w.b.AddBytes(v)
	return w
}
func (w *recWriter) str(v string) *recWriter { return w.bytes([]byte(v)) }
func (w *recWriter) u64(v uint64) *recWriter { w.b.AddUint64(v); return w }
func (w *recWriter) u16(v uint16) *recWriter { w.b.AddUint16(v); return w }
func (w *recWriter) boolean(v bool) *recWriter {
	if v {
		w.b.AddUint8(1)
	} else {
		w.b.AddUint8(0)
	}
	return w
}
func (w *recWriter) list(l [][]byte) *recWriter {
	w.b.AddUint32(uint32(len(l)))
	for _, e := range l {
		w.bytes(e)
	}
	return w
}

// optBytes appends an optional trailing field: nothing when v is empty,
// so records written before the field existed read the same.
func (w *recWriter) optBytes(v []byte) *recWriter {
	if len(v) == 0 {
		return w
	}
	return w.bytes(v)
}

func (w *recWriter) done() []byte { return w.b.BytesOrPanic() }

type recReader struct {
	s   cryptobyte.String
	bad bool
}

func readRec(data []byte) *recReader {
	r := &recReader{s: cryptobyte.String(data)}
	var f uint8
	if !r.s.ReadUint8(&f) || f != recordFormat {
		r.bad = true
	}
	return r
}

func (r *recReader) bytes() []byte {
	if r.bad {
		return nil
	}
	var n uint32
	var v []byte
	if !r.s.ReadUint32(&n) || n > maxField || !r.s.ReadBytes(&v, int(n)) {
		r.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	return bytes.Clone(v)
}
func (r *recReader) str() string { return string(r.bytes()) }
func (r *recReader) u64() uint64 {
	var v uint64
	if r.bad || !r.s.ReadUint64(&v) {
		r.bad = true
	}
	return v
}
func (r *recReader) u16() uint16 {
	var v uint16
	if r.bad || !r.s.ReadUint16(&v) {
		r.bad = true
	}
	return v
}
func (r *recReader) boolean() bool {
	var v uint8
	if r.bad || !r.s.ReadUint8(&v) || v > 1 {
		r.bad = true
	}
	return v == 1
}
func (r *recReader) list() [][]byte {
	var n uint32
	if r.bad || !r.s.ReadUint32(&n) || uint64(n)*4 > uint64(len(r.s)) {
		r.bad = true
		return nil
	}
	var out [][]byte
	for range n {
		e := r.bytes()
		if r.bad {
			return nil
		}
		if e == nil {
			e = []byte{}
		}
		out = append(out, e)
	}
	return out
}

// optBytes reads an optional trailing field (recWriter.optBytes): nil at
// the end of the record; present, it must not be empty.
func (r *recReader) optBytes() []byte {
	if r.bad || r.s.Empty() {
		return nil
	}
	v := r.bytes()
	if v == nil {
		r.bad = true
	}
	return v
}

// end reports whether the record was well-formed and fully read.
func (r *recReader) end() error {
	if r.bad || !r.s.Empty() {
		return errRecord
	}
	return nil
}

// peerRecord is a pinned user key.
type peerRecord struct {
	User     string
	Key      []byte // the pinned user key
	Verified bool   // the user compared safety numbers (verify --accept)
	Changed  []byte // a different key the server now publishes, refused until accepted
	// Retired are earlier keys of the user that the pin moved away from
	// by verified key transitions (password changes), oldest first:
	// device certificates made under them are still accepted.
	Retired [][]byte
}

func (p *peerRecord) marshal() []byte {
	return newRec().str(p.User).bytes(p.Key).boolean(p.Verified).bytes(p.Changed).optBytes(bytes.Join(p.Retired, nil)).done()
}

func parsePeer(b []byte) (*peerRecord, error) {
	r := readRec(b)
	p := &peerRecord{User: r.str(), Key: r.bytes(), Verified: r.boolean(), Changed: r.bytes()}
	retired := r.optBytes()
	if len(retired)%ed25519.PublicKeySize != 0 || len(retired) > proto.MaxTransitions*ed25519.PublicKeySize {
		return nil, errRecord
	}
	for k := range slices.Chunk(retired, ed25519.PublicKeySize) {
		p.Retired = append(p.Retired, k)
	}
	return p, r.end()
}

// kpRecord is the private part of a KeyPackage this device published.
type kpRecord struct {
	Suite      uint16
	LastResort bool
	Private    []byte // mls.KeyPackagePrivate.Marshal
}

func (k *kpRecord) marshal() []byte {
	return newRec().u16(k.Suite).boolean(k.LastResort).bytes(k.Private).done()
}

func parseKP(b []byte) (*kpRecord, error) {
	r := readRec(b)
	k := &kpRecord{Suite: r.u16(), LastResort: r.boolean(), Private: r.bytes()}
	return k, r.end()
}

// pendingCommit is a commit of ours that was persisted before it was
// submitted (DESIGN.md, "Committing client").
type pendingCommit struct {
	Commit  []byte
	Welcome []byte
	Added   [][]byte // device keys
	Removed [][]byte // device keys
}

// groupRecord is one group this device is in (or was removed from).
type groupRecord struct {
	ID       []byte
	Name     string // local name
	Peer     string // for a dm: the other user
	Removed  bool   // a commit removed this device
	State    []byte // mls.Group.Marshal, pending commit included
	Pending  *pendingCommit
	Inviter  string // who added this device
	NameSent bool   // the group's name has been sent after the last add

	// Leaving (leave.go): this device asked to leave and proposes its
	// removal in each epoch (ProposedEpoch is the epoch of its last
	// proposal plus one, 0 for none) until a commit removes it; LeaveAll
	// proposes the removal of the user's other devices too. Left: a
	// commit removed it after it asked to leave. Leavers are the devices
	// that proposed their own user's removal in the current epoch;
	// LeftDevices the user's own devices that left the group, which the
	// approval flow does not add again unless approved again.
	Leaving       bool
	LeaveAll      bool
	ProposedEpoch uint64
	Left          bool
	Leavers       [][]byte
	LeftDevices   [][]byte
}

// hasLeaveFields says whether any field of the leave trailer is set; the
// trailer is encoded only then, so records of groups nobody leaves keep
// their older encoding and every record has one encoding.
func (g *groupRecord) hasLeaveFields() bool {
	return g.Leaving || g.LeaveAll || g.ProposedEpoch != 0 || g.Left || len(g.Leavers) > 0 || len(g.LeftDevices) > 0
}

func (g *groupRecord) marshal() []byte {
	w := newRec().bytes(g.ID).str(g.Name).str(g.Peer).boolean(g.Removed).bytes(g.State)
	w.boolean(g.Pending != nil)
	if g.Pending != nil {
		w.bytes(g.Pending.Commit).bytes(g.Pending.Welcome).list(g.Pending.Added).list(g.Pending.Removed)
	}
	w.str(g.Inviter).boolean(g.NameSent)
	if g.hasLeaveFields() {
		w.boolean(g.Leaving).boolean(g.LeaveAll).u64(g.ProposedEpoch).boolean(g.Left).list(g.Leavers).list(g.LeftDevices)
	}
	return w.done()
}

func parseGroup(b []byte) (*groupRecord, error) {
	r := readRec(b)
	g := &groupRecord{ID: r.bytes(), Name: r.str(), Peer: r.str(), Removed: r.boolean(), State: r.bytes()}
	if r.boolean() {
		g.Pending = &pendingCommit{Commit: r.bytes(), Welcome: r.bytes(), Added: r.list(), Removed: r.list()}
	}
	g.Inviter = r.str()
	g.NameSent = r.boolean()
	if !r.bad && !r.s.Empty() {
		g.Leaving, g.LeaveAll, g.ProposedEpoch, g.Left = r.boolean(), r.boolean(), r.u64(), r.boolean()
		g.Leavers, g.LeftDevices = r.list(), r.list()
		if !r.bad && !g.hasLeaveFields() {
			return nil, errRecord // an all-zero trailer is not the canonical encoding
		}
	}
	return g, r.end()
}

// EventKind says what an Event reports.
type EventKind uint8

// Kinds of Event.
const (
	EventMessage    EventKind = 1 // a text message
	EventJoined     EventKind = 2 // this device joined a group
	EventMembers    EventKind = 3 // members were added or removed
	EventRemoved    EventKind = 4 // this device was removed from a group
	EventRefused    EventKind = 5 // a message was refused (forged stamp, bad credential)
	EventKeyRotated EventKind = 6 // a member updated its keys
	EventLost       EventKind = 7 // messages or state were damaged and are lost
	EventLeft       EventKind = 8 // a member left (Text: "bob left"), or this device did ("you left")
	EventFile       EventKind = 9 // a file: Text is its name, File its reference
)

func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventJoined:
		return "joined"
	case EventMembers:
		return "members"
	case EventRemoved:
		return "removed"
	case EventRefused:
		return "refused"
	case EventKeyRotated:
		return "update"
	case EventLost:
		return "lost"
	case EventLeft:
		return "left"
	case EventFile:
		return "file"
	}
	return "unknown"
}

// Event is one entry of a device's history: a message received or sent,
// or a change of a group.
type Event struct {
	Seq      uint64 // position in the history (assigned when stored)
	Kind     EventKind
	Group    []byte
	Sender   string // user name of the sender (or the committer)
	DeviceID []byte // sending device
	Outgoing bool   // sent by this device
	Time     int64  // unix seconds when stored
	Epoch    uint64
	Text     string   // message text, or a description
	Users    []string // users added or removed
	File     []byte   // EventFile: the file reference (files.go), kept to download it
}

func (e *Event) marshal() []byte {
	users := make([][]byte, len(e.Users))
	for i, u := range e.Users {
		users[i] = []byte(u)
	}
	return newRec().u16(uint16(e.Kind)).bytes(e.Group).str(e.Sender).bytes(e.DeviceID).boolean(e.Outgoing).
		u64(uint64(e.Time)).u64(e.Epoch).str(e.Text).list(users).optBytes(e.File).done()
}

func parseEvent(b []byte) (*Event, error) {
	r := readRec(b)
	kind := r.u16()
	if kind > 0xff {
		return nil, errRecord
	}
	e := &Event{Kind: EventKind(kind), Group: r.bytes(), Sender: r.str(), DeviceID: r.bytes(), Outgoing: r.boolean(),
		Time: int64(r.u64()), Epoch: r.u64(), Text: r.str()}
	for _, u := range r.list() {
		e.Users = append(e.Users, string(u))
	}
	e.File = r.optBytes()
	if err := r.end(); err != nil {
		return nil, err
	}
	if e.Kind < EventMessage || e.Kind > EventFile || (e.File != nil) != (e.Kind == EventFile) {
		return nil, errRecord
	}
	return e, nil
}
