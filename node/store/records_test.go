package store

import (
	"bytes"
	"reflect"
	"testing"
)

var (
	sampleAccount = Account{User: "alice", Record: bytes.Repeat([]byte{1}, 192), KSF: KSFParams{3, 65536, 4}, UserKey: bytes.Repeat([]byte{2}, 32)}
	sampleDevice  = Device{User: "alice", Key: bytes.Repeat([]byte{3}, 32), Certificate: bytes.Repeat([]byte{4}, 64), Revoked: true}
	sampleKP      = KeyPackage{Ref: bytes.Repeat([]byte{5}, 32), Data: bytes.Repeat([]byte{6}, 1300)}
	sampleFetch   = fetchRecord{Device: bytes.Repeat([]byte{7}, 32), Suite: 0xFA01, At: 1_800_000_000}
	sampleGroup   = Group{ID: bytes.Repeat([]byte{8}, 32), Epoch: 42, Members: [][]byte{bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{10}, 32)}}
	sampleEnv     = Envelope{Kind: KindCommit, Group: bytes.Repeat([]byte{11}, 32), Sender: bytes.Repeat([]byte{12}, 32),
		Added: [][]byte{{13}}, Removed: [][]byte{{14}, {15}}, Data: []byte("commit")}
	sampleQueue = QueueState{Len: 3, Last: 99, Overflowed: true}
)

// fuzzRecord checks a decoder: no panic, a failure returns the zero value,
// and a success re-marshals to the same bytes.
func fuzzRecord[T any](f *testing.F, seeds [][]byte, parse func([]byte) (T, error), marshal func(*T) []byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parse(data)
		if err != nil {
			if !reflect.ValueOf(v).IsZero() {
				t.Errorf("failed parse returned a partial value %+v", v)
			}
			return
		}
		if got := marshal(&v); !bytes.Equal(got, data) {
			t.Errorf("re-marshal = %x, want %x", got, data)
		}
	})
}

func seedsOf(b []byte) [][]byte {
	return [][]byte{b, b[:len(b)-1], append(bytes.Clone(b), 0), {}, {recordFormat}}
}

func FuzzAccount(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleAccount.marshal()), parseAccount, (*Account).marshal)
}

func FuzzDevice(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleDevice.marshal()), parseDevice, (*Device).marshal)
}

func FuzzKeyPackage(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleKP.marshal()), parseKeyPackage, (*KeyPackage).marshal)
}

func FuzzFetchRecord(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleFetch.marshal()), parseFetchRecord, (*fetchRecord).marshal)
}

func FuzzGroup(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleGroup.marshal()), parseGroup, (*Group).marshal)
}

func FuzzEnvelope(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleEnv.marshal()), parseEnvelope, (*Envelope).marshal)
}

func FuzzQueueState(f *testing.F) {
	fuzzRecord(f, seedsOf(sampleQueue.marshal()), parseQueueState, (*QueueState).marshal)
}

func FuzzHeader(f *testing.F) {
	h := header{source: keyFromPassphrase, salt: bytes.Repeat([]byte{1}, saltSize), kdf: DefaultKDF, check: bytes.Repeat([]byte{2}, checkSize)}
	kf := header{source: keyFromFile, check: bytes.Repeat([]byte{3}, checkSize)}
	parse := func(b []byte) (header, error) {
		h, err := parseHeader(b)
		if err != nil {
			return header{}, err
		}
		return *h, nil
	}
	fuzzRecord(f, append(seedsOf(h.marshal()), kf.marshal()), parse, (*header).marshal)
}

func TestRecordRoundTrip(t *testing.T) {
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip = %+v, %v; want %+v", name, got, err, want)
		}
	}
	a, err := parseAccount(sampleAccount.marshal())
	check("Account", a, sampleAccount, err)
	d, err := parseDevice(sampleDevice.marshal())
	check("Device", d, sampleDevice, err)
	k, err := parseKeyPackage(sampleKP.marshal())
	check("KeyPackage", k, sampleKP, err)
	fr, err := parseFetchRecord(sampleFetch.marshal())
	check("fetchRecord", fr, sampleFetch, err)
	g, err := parseGroup(sampleGroup.marshal())
	check("Group", g, sampleGroup, err)
	e, err := parseEnvelope(sampleEnv.marshal())
	check("Envelope", e, sampleEnv, err)
	q, err := parseQueueState(sampleQueue.marshal())
	check("QueueState", q, sampleQueue, err)

	// Non-canonical or out-of-range encodings are refused.
	bad := map[string][]byte{
		"device with revoked=2":   func() []byte { b := sampleDevice.marshal(); b[len(b)-1] = 2; return b }(),
		"envelope of kind 0":      func() []byte { b := sampleEnv.marshal(); b[1] = 0; return b }(),
		"group with empty member": (&Group{ID: []byte{1}, Members: [][]byte{{}}}).marshal(),
		"account with empty user": (&Account{}).marshal(),
		"record format 2":         func() []byte { b := sampleQueue.marshal(); b[0] = 2; return b }(),
	}
	if _, err := parseDevice(bad["device with revoked=2"]); err == nil {
		t.Error("parseDevice accepted revoked=2")
	}
	if _, err := parseEnvelope(bad["envelope of kind 0"]); err == nil {
		t.Error("parseEnvelope accepted kind 0")
	}
	if _, err := parseGroup(bad["group with empty member"]); err == nil {
		t.Error("parseGroup accepted an empty member key")
	}
	if _, err := parseAccount(bad["account with empty user"]); err == nil {
		t.Error("parseAccount accepted an empty user name")
	}
	if _, err := parseQueueState(bad["record format 2"]); err == nil {
		t.Error("parseQueueState accepted format 2")
	}
}
