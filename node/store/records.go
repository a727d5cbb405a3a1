package store

import (
	"bytes"
	"fmt"
	"math"

	"golang.org/x/crypto/cryptobyte"
)

// Record encodings. Every stored record is
//
//	uint8 format (1) ‖ fields
//
// with variable-length fields prefixed by their length (uint8, uint16 or
// uint32, as listed per type) and lists as a uint32 length of the encoded
// elements. Decoders check every length against a bound, require booleans to
// be 0 or 1 and reject trailing bytes, so each value has exactly one
// encoding and a successful parse re-marshals to the same bytes. No gob or
// JSON: the format is ours, small, and cannot instantiate anything.

const recordFormat = 1

// Bounds enforced by the decoders (and by the Store methods on input).
const (
	MaxUserLen      = 1024    // bytes of a normalised user name
	MaxKeyLen       = 255     // bytes of a device or user public key, a KeyPackageRef, a hash
	MaxGroupIDLen   = 255     // bytes of a group id
	MaxBlobLen      = 1 << 16 // bytes of an OPAQUE record or device certificate
	MaxMessageLen   = 1 << 24 // bytes of a stored MLS message or KeyPackage
	maxListElements = 1 << 16 // entries of a device list
)

// KSFParams are an OPAQUE account's key-stretching (Argon2id) parameters,
// stored with its record and sent back with every login response.
type KSFParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// Account is a registered user: an OPAQUE registration record (RFC 9807,
// Section 5.1.3 "RegistrationRecord") under a normalised user name.
type Account struct {
	User    string    // PRECIS-normalised name, 1..MaxUserLen bytes
	Record  []byte    // OPAQUE RegistrationRecord
	KSF     KSFParams // parameters the record was made with
	UserKey []byte    // the user's Ed25519 public key
	// Transitions are the user's key-transition statements (password
	// changes), oldest first, each TransitionLen bytes; kept opaque here.
	Transitions [][]byte
}

// TransitionLen is the length of one key-transition statement (two
// Ed25519 keys, a sequence number and two signatures;
// node/proto.TransitionLen).
const TransitionLen = 200

// transitionLenV1 is the length of the statements of the first format
// (one signature), which server migration 4 drops.
const transitionLenV1 = 128

// MaxTransitions bounds the statements kept per account.
const MaxTransitions = 32

// Device is a user's device, identified by its public (signature) key,
// which is unique across all users.
type Device struct {
	User        string
	Key         []byte // Ed25519 public key
	Certificate []byte // the user key's signature over the device key
	Revoked     bool
}

// KeyPackage is one uploaded KeyPackage: its KeyPackageRef (RFC 9420,
// Section 5.2) and its MLSMessage bytes.
type KeyPackage struct {
	Ref  []byte
	Data []byte
}

// FetchedKeyPackage is what FetchKeyPackages hands out for one device.
type FetchedKeyPackage struct {
	Device     []byte // the device the package belongs to
	KeyPackage        // Ref and Data
	LastResort bool   // the pool was empty: this is the device's last-resort package
	Remaining  int    // packages left in the device's pool after this fetch
}

// Group is the routing state of a group: its current epoch and member
// devices. The server never holds the ratchet tree.
type Group struct {
	ID      []byte
	Epoch   uint64   // the epoch a commit must name to be accepted
	Members [][]byte // device keys, in the order they joined
}

// MessageKind says what a queued message is.
type MessageKind uint8

const (
	KindApplication MessageKind = 1 // application message or proposal, from Send
	KindCommit      MessageKind = 2 // a commit, to the members before it
	KindWelcome     MessageKind = 3 // a Welcome, to the devices a commit added
)

func (k MessageKind) valid() bool { return k >= KindApplication && k <= KindWelcome }

// Envelope is one message in a device's queue, with the server's stamp:
// the authenticated sending device and, for a commit or Welcome, the
// declared added and removed devices.
type Envelope struct {
	Kind    MessageKind
	Group   []byte
	Sender  []byte // device key of the authenticated sender
	Added   [][]byte
	Removed [][]byte
	Data    []byte // the MLSMessage, opaque to the store
}

// QueuedMessage is an Envelope with its per-device sequence number.
type QueuedMessage struct {
	Seq uint64
	Envelope
}

// QueueState describes a device's queue.
type QueueState struct {
	Len        uint64 // messages waiting (not yet acknowledged)
	Last       uint64 // highest sequence number ever assigned
	Overflowed bool   // the queue hit its limit and messages were dropped
}

// fetchRecord remembers that a caller fetched a KeyPackage, so a later
// commit's Welcome can be matched against what that caller fetched.
type fetchRecord struct {
	Device []byte
	Suite  uint16
	At     int64 // Unix seconds of the fetch (PruneFetched)
}

// Encoding helpers.

func addBytes8(b *cryptobyte.Builder, v []byte) {
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addBytes16(b *cryptobyte.Builder, v []byte) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addBytes32(b *cryptobyte.Builder, v []byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addBool(b *cryptobyte.Builder, v bool) {
	if v {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

func addList(b *cryptobyte.Builder, list [][]byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range list {
			addBytes8(b, e)
		}
	})
}

func readBytes8(s *cryptobyte.String, out *[]byte, min int) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) || len(v) < min {
		return false
	}
	*out = bytes.Clone(v)
	return true
}

func readBytes16(s *cryptobyte.String, out *[]byte, min, max int) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v) < min || len(v) > max {
		return false
	}
	*out = bytes.Clone(v)
	return true
}

// readUint32Prefixed reads a uint32 length and that many bytes.
func readUint32Prefixed(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n uint32
	var v []byte
	if !s.ReadUint32(&n) || uint64(n) > uint64(len(*s)) || !s.ReadBytes(&v, int(n)) {
		return false
	}
	*out = v
	return true
}

func readBytes32(s *cryptobyte.String, out *[]byte, max int) bool {
	var v cryptobyte.String
	if !readUint32Prefixed(s, &v) || len(v) > max {
		return false
	}
	*out = bytes.Clone(v)
	return true
}

func readBool(s *cryptobyte.String, out *bool) bool {
	var v uint8
	if !s.ReadUint8(&v) || v > 1 {
		return false
	}
	*out = v == 1
	return true
}

// readList reads a list of non-empty uint8-prefixed byte strings.
func readList(s *cryptobyte.String, out *[][]byte) bool {
	var v cryptobyte.String
	if !readUint32Prefixed(s, &v) {
		return false
	}
	var list [][]byte
	for !v.Empty() {
		var e []byte
		if len(list) == maxListElements || !readBytes8(&v, &e, 1) {
			return false
		}
		list = append(list, e)
	}
	*out = list
	return true
}

func readFormat(s *cryptobyte.String) bool {
	var f uint8
	return s.ReadUint8(&f) && f == recordFormat
}

func finish(s cryptobyte.String, ok bool, what string) error {
	if !ok || !s.Empty() {
		return fmt.Errorf("store: malformed %s record: %w", what, ErrCorrupt)
	}
	return nil
}

func build(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddUint8(recordFormat)
	f(&b)
	out, err := b.Bytes()
	if err != nil {
		// Only an oversized field can fail, and every field is checked
		// against its bound before it reaches a marshal function.
		panic("store: internal error: " + err.Error())
	}
	return out
}

func (a *Account) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addBytes16(b, []byte(a.User))
		addBytes16(b, a.Record)
		b.AddUint32(a.KSF.Time)
		b.AddUint32(a.KSF.MemoryKiB)
		b.AddUint8(a.KSF.Threads)
		addBytes8(b, a.UserKey)
		if len(a.Transitions) > 0 {
			// Appended after the first release; records without it
			// parse as having no transitions.
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, t := range a.Transitions {
					b.AddBytes(t)
				}
			})
		}
	})
}

func parseAccount(data []byte) (Account, error) {
	return parseAccountWith(data, TransitionLen)
}

// parseAccountWith parses an account record whose transitions are tlen
// bytes each.
func parseAccountWith(data []byte, tlen int) (Account, error) {
	var a Account
	var user []byte
	s := cryptobyte.String(data)
	ok := readFormat(&s) && readBytes16(&s, &user, 1, MaxUserLen) &&
		readBytes16(&s, &a.Record, 0, MaxBlobLen) &&
		s.ReadUint32(&a.KSF.Time) && s.ReadUint32(&a.KSF.MemoryKiB) && s.ReadUint8(&a.KSF.Threads) &&
		readBytes8(&s, &a.UserKey, 0)
	if ok && !s.Empty() {
		var ts cryptobyte.String
		ok = s.ReadUint16LengthPrefixed(&ts) && len(ts) > 0 && len(ts)%tlen == 0 &&
			len(ts)/tlen <= MaxTransitions
		for ok && !ts.Empty() {
			var t []byte
			ok = ts.ReadBytes(&t, tlen)
			a.Transitions = append(a.Transitions, bytes.Clone(t))
		}
	}
	if err := finish(s, ok, "account"); err != nil {
		return Account{}, err
	}
	a.User = string(user)
	return a, nil
}

func (d *Device) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addBytes16(b, []byte(d.User))
		addBytes8(b, d.Key)
		addBytes16(b, d.Certificate)
		addBool(b, d.Revoked)
	})
}

func parseDevice(data []byte) (Device, error) {
	var d Device
	var user []byte
	s := cryptobyte.String(data)
	ok := readFormat(&s) && readBytes16(&s, &user, 1, MaxUserLen) &&
		readBytes8(&s, &d.Key, 1) && readBytes16(&s, &d.Certificate, 0, MaxBlobLen) &&
		readBool(&s, &d.Revoked)
	if err := finish(s, ok, "device"); err != nil {
		return Device{}, err
	}
	d.User = string(user)
	return d, nil
}

func (k *KeyPackage) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addBytes8(b, k.Ref)
		addBytes32(b, k.Data)
	})
}

func parseKeyPackage(data []byte) (KeyPackage, error) {
	var k KeyPackage
	s := cryptobyte.String(data)
	ok := readFormat(&s) && readBytes8(&s, &k.Ref, 1) && readBytes32(&s, &k.Data, MaxMessageLen)
	if err := finish(s, ok, "KeyPackage"); err != nil {
		return KeyPackage{}, err
	}
	return k, nil
}

func (f *fetchRecord) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addBytes8(b, f.Device)
		b.AddUint16(f.Suite)
		b.AddUint64(uint64(f.At))
	})
}

func parseFetchRecord(data []byte) (fetchRecord, error) {
	var f fetchRecord
	s := cryptobyte.String(data)
	var at uint64
	ok := readFormat(&s) && readBytes8(&s, &f.Device, 1) && s.ReadUint16(&f.Suite) && s.ReadUint64(&at) && at <= math.MaxInt64
	if err := finish(s, ok, "fetch"); err != nil {
		return fetchRecord{}, err
	}
	f.At = int64(at)
	return f, nil
}

func (g *Group) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		addBytes8(b, g.ID)
		b.AddUint64(g.Epoch)
		addList(b, g.Members)
	})
}

func parseGroup(data []byte) (Group, error) {
	var g Group
	s := cryptobyte.String(data)
	ok := readFormat(&s) && readBytes8(&s, &g.ID, 1) && s.ReadUint64(&g.Epoch) && readList(&s, &g.Members)
	if err := finish(s, ok, "group"); err != nil {
		return Group{}, err
	}
	return g, nil
}

func (e *Envelope) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(e.Kind))
		addBytes8(b, e.Group)
		addBytes8(b, e.Sender)
		addList(b, e.Added)
		addList(b, e.Removed)
		addBytes32(b, e.Data)
	})
}

func parseEnvelope(data []byte) (Envelope, error) {
	var e Envelope
	var kind uint8
	s := cryptobyte.String(data)
	ok := readFormat(&s) && s.ReadUint8(&kind) && MessageKind(kind).valid() &&
		readBytes8(&s, &e.Group, 1) && readBytes8(&s, &e.Sender, 1) &&
		readList(&s, &e.Added) && readList(&s, &e.Removed) && readBytes32(&s, &e.Data, MaxMessageLen)
	if err := finish(s, ok, "message"); err != nil {
		return Envelope{}, err
	}
	e.Kind = MessageKind(kind)
	return e, nil
}

func (q *QueueState) marshal() []byte {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint64(q.Len)
		b.AddUint64(q.Last)
		addBool(b, q.Overflowed)
	})
}

func parseQueueState(data []byte) (QueueState, error) {
	var q QueueState
	s := cryptobyte.String(data)
	ok := readFormat(&s) && s.ReadUint64(&q.Len) && s.ReadUint64(&q.Last) && readBool(&s, &q.Overflowed)
	if err := finish(s, ok, "queue"); err != nil {
		return QueueState{}, err
	}
	return q, nil
}
