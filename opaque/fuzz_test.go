package opaque

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"qpchat/internal/vectors"
)

// fuzzFixture is one configuration with a registered user, for the fuzz
// targets that run the protocol on what they parse.
type fuzzFixture struct {
	name string
	*registered
	// Messages of one complete run, used as seeds.
	seeds map[string][]byte
}

// fuzzFixtures prepares qpchat's test configuration and the two other
// AKE groups, each with a registered user and one recorded run.
func fuzzFixtures(tb testing.TB) []*fuzzFixture {
	tb.Helper()
	cfgs := testConfigs()
	var out []*fuzzFixture
	for _, name := range []string{"qpchat", "x25519", "p256"} {
		c := cfgs[name]
		rnd := seeded(30)
		r := register(tb, c, rnd, "pw")
		cr, req, _ := c.NewClientRegistration(rnd, []byte("pw"))
		resp, _ := r.srv.RegistrationResponse(req, r.cid)
		_, _, _ = cr.Finish(rnd, resp, c.KSF, Identities{})
		cl, ke1, _ := c.NewClientLogin(rnd, []byte("pw"))
		ke2, _, _ := r.srv.Login(rnd, ke1, r.record, r.cid, Identities{})
		res, err := cl.Finish(ke2, r.ksf, Identities{})
		if err != nil {
			tb.Fatal(err)
		}
		setup, _ := c.GenerateServerSetup(rnd)
		ksf, _ := c.KSF.MarshalBinary()
		out = append(out, &fuzzFixture{name: name, registered: r, seeds: map[string][]byte{
			"RegistrationRequest":  req.Marshal(),
			"RegistrationResponse": resp.Marshal(),
			"RegistrationRecord":   r.record.Marshal(),
			"KE1":                  ke1.Marshal(),
			"KE2":                  ke2.Marshal(),
			"KE3":                  res.KE3.Marshal(),
			"ServerSetup":          setup.Marshal(),
			"KSF":                  ksf,
		}})
	}
	return out
}

// vectorSeeds returns the messages of the RFC 9807 vectors when the folder
// is present. It does not skip the fuzz target when the folder is absent
// (vectors.Load would), but once the folder is there the file is read
// through vectors.Load, so a missing or malformed file fails the target.
func vectorSeeds(f *testing.F) [][]byte {
	dir := os.Getenv("QPCHAT_OPAQUE_VECTORS")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(vectors.ModuleRoot()), "shared", "opaque-test-vectors")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil
	}
	v := loadRFC9807Vectors(f)
	var out [][]byte
	for _, tv := range v {
		o := tv.Outputs
		for _, m := range [][]byte{o.RegistrationRequest, o.RegistrationResponse, o.RegistrationUpload, o.KE1, o.KE2, o.KE3, tv.Inputs.KE1} {
			if m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

type marshaler interface{ Marshal() []byte }

// fuzzDecoder seeds f with every recorded message and the vectors, then
// parses each input under every configuration: a parse either fails with
// no value or returns a value that re-marshals to the input, on which use
// then runs the protocol.
func fuzzDecoder[T marshaler](f *testing.F, kind string,
	parse func(c *Config) func([]byte) (T, error),
	use func(t *testing.T, fx *fuzzFixture, m T),
) {
	fixtures := fuzzFixtures(f)
	for _, fx := range fixtures {
		for _, s := range fx.seeds {
			f.Add(s)
		}
		f.Add(fx.seeds[kind][1:])
	}
	for _, s := range vectorSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fx := range fixtures {
			m, err := parse(fx.cfg)(b)
			if err != nil {
				if !reflect.ValueOf(m).IsNil() {
					t.Fatalf("%s: %s parse failed but returned a value", fx.name, kind)
				}
				continue
			}
			if !bytes.Equal(m.Marshal(), b) {
				t.Fatalf("%s: %s re-marshals to %x, input %x", fx.name, kind, m.Marshal(), b)
			}
			if use != nil {
				use(t, fx, m)
			}
		}
	})
}

func FuzzRegistrationRequest(f *testing.F) {
	fuzzDecoder(f, "RegistrationRequest",
		func(c *Config) func([]byte) (*RegistrationRequest, error) { return c.ParseRegistrationRequest },
		func(t *testing.T, fx *fuzzFixture, m *RegistrationRequest) {
			// Every well-formed request gets an answer.
			if _, err := fx.srv.RegistrationResponse(m, fx.cid); err != nil {
				t.Fatalf("%s: RegistrationResponse on a parsed request: %v", fx.name, err)
			}
		})
}

func FuzzRegistrationResponse(f *testing.F) {
	fuzzDecoder(f, "RegistrationResponse",
		func(c *Config) func([]byte) (*RegistrationResponse, error) { return c.ParseRegistrationResponse },
		func(t *testing.T, fx *fuzzFixture, m *RegistrationResponse) {
			cr, _, err := fx.cfg.NewClientRegistration(seeded(31), []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			record, _, err := cr.Finish(seeded(32), m, fx.cfg.KSF, Identities{})
			if err != nil {
				t.Fatalf("%s: ClientRegistration.Finish on a parsed response: %v", fx.name, err)
			}
			if _, err := fx.cfg.ParseRegistrationRecord(record.Marshal()); err != nil {
				t.Fatalf("%s: record from a parsed response does not parse: %v", fx.name, err)
			}
		})
}

func FuzzRegistrationRecord(f *testing.F) {
	fuzzDecoder(f, "RegistrationRecord",
		func(c *Config) func([]byte) (*RegistrationRecord, error) { return c.ParseRegistrationRecord },
		func(t *testing.T, fx *fuzzFixture, m *RegistrationRecord) {
			_, ke1, _ := fx.cfg.NewClientLogin(seeded(33), []byte("pw"))
			if _, _, err := fx.srv.Login(seeded(34), ke1, m, fx.cid, Identities{}); err != nil {
				t.Fatalf("%s: Login with a parsed record: %v", fx.name, err)
			}
		})
}

func FuzzKE1(f *testing.F) {
	fuzzDecoder(f, "KE1",
		func(c *Config) func([]byte) (*KE1, error) { return c.ParseKE1 },
		func(t *testing.T, fx *fuzzFixture, m *KE1) {
			ke2, _, err := fx.srv.Login(seeded(35), m, fx.record, fx.cid, Identities{})
			if err != nil {
				t.Fatalf("%s: Login on a parsed KE1: %v", fx.name, err)
			}
			if len(ke2.Marshal()) != fx.cfg.KE2Size() {
				t.Fatalf("%s: KE2 is %d bytes", fx.name, len(ke2.Marshal()))
			}
		})
}

func FuzzKE2(f *testing.F) {
	fuzzDecoder(f, "KE2",
		func(c *Config) func([]byte) (*KE2, error) { return c.ParseKE2 },
		func(t *testing.T, fx *fuzzFixture, m *KE2) {
			// A fresh login state never accepts a KE2 it did not cause.
			cl, _, _ := fx.cfg.NewClientLogin(seeded(36), []byte("pw"))
			if res, err := cl.Finish(m, fx.ksf, Identities{}); err == nil || res != nil {
				t.Fatalf("%s: client accepted a KE2 made for another KE1", fx.name)
			}
		})
}

func FuzzKE3(f *testing.F) {
	fuzzDecoder(f, "KE3",
		func(c *Config) func([]byte) (*KE3, error) { return c.ParseKE3 },
		func(t *testing.T, fx *fuzzFixture, m *KE3) {
			_, ke1, _ := fx.cfg.NewClientLogin(seeded(37), []byte("pw"))
			_, sl, err := fx.srv.Login(seeded(38), ke1, fx.record, fx.cid, Identities{})
			if err != nil {
				t.Fatal(err)
			}
			if key, err := sl.Finish(m); err == nil || key != nil {
				t.Fatalf("%s: server accepted a KE3 nobody computed", fx.name)
			}
		})
}

func FuzzServerSetup(f *testing.F) {
	fuzzDecoder(f, "ServerSetup",
		func(c *Config) func([]byte) (*ServerSetup, error) { return c.ParseServerSetup },
		func(t *testing.T, fx *fuzzFixture, m *ServerSetup) {
			if _, err := fx.cfg.NewServer(m); err != nil {
				t.Fatalf("%s: NewServer on a parsed setup: %v", fx.name, err)
			}
		})
}

func FuzzKSF(f *testing.F) {
	for _, k := range []KSF{IdentityKSF{}, DefaultArgon2id, TestArgon2id} {
		b, _ := k.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKSF(b)
		if err != nil {
			if k != nil {
				t.Fatal("ParseKSF failed but returned a value")
			}
			return
		}
		re, err := k.MarshalBinary()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("ParseKSF(%x) re-marshals to %x, %v", b, re, err)
		}
		// Never stretch here: fuzzed parameters may ask for gigabytes.
		_ = DefaultKSFBounds.Check(k)
	})
}
