package opaque

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// BenchmarkServerLogin measures the server's CPU per login: Server.Login
// (KE2) and ServerLogin.Finish (KE3) for a registered user, qpchat's
// configuration (the KSF runs only at the client). The server's randomness
// is replayed so that one precomputed KE3 is valid in every iteration.
func BenchmarkServerLogin(b *testing.B) {
	c := QPChatTest()
	r := register(b, c, rand.Reader, "pw")
	cl, ke1, err := c.NewClientLogin(rand.Reader, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	srvRand := make([]byte, 3*32)
	rand.Read(srvRand)
	ke2, _, err := r.srv.Login(bytes.NewReader(srvRand), ke1, r.record, r.cid, Identities{})
	if err != nil {
		b.Fatal(err)
	}
	res, err := cl.Finish(ke2, r.ksf, Identities{})
	if err != nil {
		b.Fatal(err)
	}
	ke1Bytes, ke3Bytes, recordBytes := ke1.Marshal(), res.KE3.Marshal(), r.record.Marshal()
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		// As the node does: parse what arrives and what is stored.
		ke1, err := c.ParseKE1(ke1Bytes)
		if err != nil {
			b.Fatal(err)
		}
		record, err := c.ParseRegistrationRecord(recordBytes)
		if err != nil {
			b.Fatal(err)
		}
		_, sl, err := r.srv.Login(bytes.NewReader(srvRand), ke1, record, r.cid, Identities{})
		if err != nil {
			b.Fatal(err)
		}
		ke3, err := c.ParseKE3(ke3Bytes)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sl.Finish(ke3); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkServerLoginUnknown measures the answer to an unknown user, which
// must cost about as much as a real login so timing does not tell them
// apart.
func BenchmarkServerLoginUnknown(b *testing.B) {
	c := QPChatTest()
	r := register(b, c, rand.Reader, "pw")
	_, ke1, err := c.NewClientLogin(rand.Reader, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		if _, _, err := r.srv.LoginUnknown(rand.Reader, ke1, []byte("mallory"), Identities{}); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkServerRegistration measures RegistrationResponse.
func BenchmarkServerRegistration(b *testing.B) {
	c := QPChatTest()
	r := register(b, c, rand.Reader, "pw")
	_, req, err := c.NewClientRegistration(rand.Reader, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	start := processCPU()
	for b.Loop() {
		if _, err := r.srv.RegistrationResponse(req, r.cid); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkClientLogin measures the client's side of a login with qpchat's
// real Argon2id (t=3, m=64 MiB, p=4): NewClientLogin and Finish. This is
// the deliberate cost of a login.
func BenchmarkClientLogin(b *testing.B) {
	c := QPChat()
	r := register(b, c, rand.Reader, "pw")
	for b.Loop() {
		cl, ke1, err := c.NewClientLogin(rand.Reader, []byte("pw"))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ke2, _, err := r.srv.Login(rand.Reader, ke1, r.record, r.cid, Identities{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := cl.Finish(ke2, r.ksf, Identities{}); err != nil {
			b.Fatal(err)
		}
	}
}
