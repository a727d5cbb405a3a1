package rpc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// webPair runs both sides of the handshake over a pipe.
func webPair(t *testing.T, cert tls.Certificate, verify func([]*x509.Certificate) error) (cl, sv *WebChannel, err error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	type res struct {
		w   *WebChannel
		err error
	}
	done := make(chan res, 1)
	go func() {
		w, err := WebServerHandshake(b, cert, rand.Reader, 5*time.Second)
		if err != nil {
			b.Close()
		}
		done <- res{w, err}
	}()
	if verify == nil {
		verify = func([]*x509.Certificate) error { return nil }
	}
	cl, err = webClientHandshake(a, rand.Reader, 5*time.Second, verify)
	if err != nil {
		a.Close()
	}
	r := <-done
	if err == nil {
		err = r.err
	}
	return cl, r.w, err
}

func TestWebChannelRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		cert tls.Certificate
	}{
		{"ed25519", issue(t, nil)},
		{"ecdsa", issueKey(t, mustECDSA(t))},
		{"rsa", issueKey(t, mustRSA(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []*x509.Certificate
			cl, sv, err := webPair(t, tc.cert, func(c []*x509.Certificate) error { seen = c; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cl.Binding(), sv.Binding()) || len(cl.Binding()) != ExporterLength {
				t.Fatalf("bindings differ or have the wrong length: %x / %x", cl.Binding(), sv.Binding())
			}
			if len(seen) != 1 || !bytes.Equal(seen[0].Raw, tc.cert.Certificate[0]) {
				t.Fatal("verify was not given the node's certificate")
			}
			// More than one record each way, read in odd pieces.
			msg := make([]byte, 3*maxRecordPlain+17)
			rand.Read(msg)
			go func() { cl.Write(msg); sv.Write(msg[:10]) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(sv, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("server read %v, equal %v", err, bytes.Equal(got, msg))
			}
			back := make([]byte, 10)
			if _, err := io.ReadFull(cl, back); err != nil || !bytes.Equal(back, msg[:10]) {
				t.Fatalf("client read %v", err)
			}
		})
	}
}

// TestWebChannelRelayHasTwoBindings: a party in the middle that runs the
// handshake with each side (it holds a certificate the client accepts)
// ends up with two different binding values, so no authentication
// bound to one verifies on the other.
func TestWebChannelRelayHasTwoBindings(t *testing.T) {
	node, mitm := issue(t, nil), issue(t, nil)
	c1, _, err := webPair(t, mitm, nil) // client <-> relay
	if err != nil {
		t.Fatal(err)
	}
	_, s2, err := webPair(t, node, nil) // relay <-> node
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c1.Binding(), s2.Binding()) {
		t.Fatal("a relay got the same binding on both sides")
	}
}

// TestWebHandshakeRefusesForgedServerHello: a ServerHello whose
// signature was made for another ClientHello (a replay) or by another
// key than the certificate's does not verify.
func TestWebHandshakeRefusesForgedServerHello(t *testing.T) {
	node := issue(t, nil)
	other := issue(t, nil)
	// A ServerHello of another handshake, replayed.
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		defer b.Close()
		readRecord(b, nil) // the victim's ClientHello, ignored
		sk, _ := webKEM.GenerateKeyPair(rand.Reader)
		old := (&clientHello{kemID: webKEM.ID(), share: sk.PublicKey().Bytes()}).marshal()
		_, enc, _ := webKEM.Encap(rand.Reader, sk.PublicKey())
		sh := &serverHello{enc: enc, chain: node.Certificate}
		u, _ := sh.unsigned()
		sh.sig, _ = signWeb(rand.Reader, node.PrivateKey, webSignedContent(old, u))
		shb, _ := sh.marshal()
		writeRecord(b, shb)
	}()
	_, err := webClientHandshake(a, rand.Reader, 5*time.Second, func([]*x509.Certificate) error { return nil })
	if !errors.Is(err, ErrWebHandshake) {
		t.Errorf("replayed ServerHello: %v, want ErrWebHandshake", err)
	}

	// The node's certificate with another key's signature.
	a, b = net.Pipe()
	defer a.Close()
	go func() {
		defer b.Close()
		chb, _ := readRecord(b, nil)
		ch, _ := parseClientHello(chb)
		pk, _ := webKEM.NewPublicKey(ch.share)
		_, enc, _ := webKEM.Encap(rand.Reader, pk)
		sh := &serverHello{enc: enc, chain: node.Certificate}
		u, _ := sh.unsigned()
		sh.sig, _ = signWeb(rand.Reader, other.PrivateKey, webSignedContent(chb, u))
		shb, _ := sh.marshal()
		writeRecord(b, shb)
	}()
	_, err = webClientHandshake(a, rand.Reader, 5*time.Second, func([]*x509.Certificate) error { return nil })
	if !errors.Is(err, ErrWebHandshake) {
		t.Errorf("signature by another key: %v, want ErrWebHandshake", err)
	}

	// verify's refusal (a pin mismatch) ends the handshake.
	refusal := errors.New("not the pinned key")
	if _, _, err := webPair(t, node, func([]*x509.Certificate) error { return refusal }); !errors.Is(err, refusal) {
		t.Errorf("refused key: %v, want the verifier's error", err)
	}
}

// tamperConn flips one bit of the nth byte written through it.
type tamperConn struct {
	net.Conn
	at, n int
}

func (c *tamperConn) Write(p []byte) (int, error) {
	q := bytes.Clone(p)
	for i := range q {
		if c.n == c.at {
			q[i] ^= 1
		}
		c.n++
	}
	return c.Conn.Write(q)
}

func TestWebChannelRefusesTamperedRecords(t *testing.T) {
	cl, sv, err := webPair(t, issue(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A flipped bit in the first record's ciphertext.
	cl.nc = &tamperConn{Conn: cl.nc, at: 4 + 3}
	go cl.Write([]byte("hello node"))
	buf := make([]byte, 64)
	if _, err := sv.Read(buf); err == nil {
		t.Fatal("a tampered record was accepted")
	}
	// The failure is final.
	if _, err := sv.Read(buf); err == nil {
		t.Fatal("read after a failed record succeeded")
	}
	if sv.Context().Err() == nil {
		t.Error("the channel's context is not done after a failed record")
	}

	// A replayed (repeated) record fails: sequence numbers are implicit.
	cl, sv, err = webPair(t, issue(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{Conn: cl.nc}
	cl.nc = rec
	go cl.Write([]byte("one"))
	if n, err := sv.Read(buf); err != nil || string(buf[:n]) != "one" {
		t.Fatalf("first record: %q, %v", buf[:n], err)
	}
	go rec.Conn.Write(rec.last)
	if _, err := sv.Read(buf); err == nil {
		t.Fatal("a replayed record was accepted")
	}
}

type recordingConn struct {
	net.Conn
	last []byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.last = bytes.Clone(p)
	return c.Conn.Write(p)
}

func TestWebRecordBounds(t *testing.T) {
	for _, n := range []uint32{0, maxRecordBody + 1, 1 << 31} {
		var b bytes.Buffer
		b.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		b.Write(make([]byte, 16))
		if _, err := readRecord(&b, nil); err == nil {
			t.Errorf("record of length %d accepted", n)
		}
	}
}

func mustECDSA(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issueKey makes a self-signed certificate for key.
func issueKey(t *testing.T, key crypto.Signer) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "qpchat web test node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func FuzzClientHello(f *testing.F) {
	sk, _ := webKEM.GenerateKeyPair(rand.Reader)
	f.Add((&clientHello{kemID: webKEM.ID(), share: sk.PublicKey().Bytes()}).marshal())
	f.Add([]byte{1, 0xfa, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseClientHello(data)
		if err != nil {
			if h != nil {
				t.Fatal("partial value on error")
			}
			return
		}
		if !bytes.Equal(h.marshal(), data) {
			t.Fatalf("ClientHello does not re-marshal to its input")
		}
	})
}

func FuzzServerHello(f *testing.F) {
	node := issue(f, nil)
	sh := &serverHello{enc: make([]byte, 1120), chain: node.Certificate, sig: make([]byte, 64)}
	b, _ := sh.marshal()
	f.Add(b)
	f.Add([]byte{1, 0, 0, 0, 0, 4, 0, 0, 1, 9, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseServerHello(data)
		if err != nil {
			if h != nil {
				t.Fatal("partial value on error")
			}
			return
		}
		got, err := h.marshal()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ServerHello does not re-marshal to its input: %v", err)
		}
	})
}

// FuzzWebRecords feeds arbitrary bytes to an established channel's
// reader: it returns errors, never panics or reads past its bound.
func FuzzWebRecords(f *testing.F) {
	f.Add([]byte{0, 0, 0, 20, 1, 2, 3})
	f.Add(append([]byte{0, 0, 0, 17}, make([]byte, 17)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer a.Close()
		w, err := newWebChannel(a, make([]byte, 32), make([]byte, 32), make([]byte, 32), nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() { b.Write(data); b.Close() }()
		buf := make([]byte, 1024)
		for {
			if _, err := w.Read(buf); err != nil {
				return
			}
		}
	})
}
