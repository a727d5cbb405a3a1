package opaque

// This file holds the configuration of RFC 9807, Section 7: the OPRF suite,
// the hash (and with it KDF and MAC), the key-stretching function, the AKE
// group and the application context, plus the sizes they imply.

import (
	"crypto"
	_ "crypto/sha256" // registers crypto.SHA256 for Config.Hash
	_ "crypto/sha512" // registers crypto.SHA512 for Config.Hash
	"errors"
	"fmt"

	"github.com/cloudflare/circl/oprf"
)

// Fixed sizes of RFC 9807, Section 4 and Section 6.
const (
	// NonceSize is Nn, the length of every nonce (envelope, masking,
	// client and server nonces).
	NonceSize = 32
	// SeedSize is Nseed, the length of the seeds fed to
	// DeriveDiffieHellmanKeyPair and to the OPRF DeriveKeyPair.
	SeedSize = 32
)

// Config is an OPAQUE-3DH configuration (RFC 9807, Section 7). The same
// values must be used by client and server. A Config is read-only once in
// use; the constructors below return a fresh value on every call.
type Config struct {
	// OPRF is the RFC 9497 suite, used in base mode (modeOPRF). Required.
	OPRF oprf.Suite
	// Hash is Hash of RFC 9807, and the hash of the KDF (HKDF, RFC 5869)
	// and of the MAC (HMAC, RFC 2104). It must be available (linked in).
	// Required.
	Hash crypto.Hash
	// Group is the group of the 3DH AKE (RFC 9807, Section 6.4). Required.
	Group Group
	// KSF is the key-stretching function new registrations use, and the one
	// a server announces for unknown users (RFC 9807, Section 10.9). The
	// KSF of an existing record travels with the record (see KSF). Required.
	KSF KSF
	// Context is the application context bound into the AKE preamble
	// (RFC 9807, Section 6.4.2). Nil means the empty string.
	Context []byte
}

// DefaultArgon2id is qpchat's key-stretching function: Argon2id with t=3,
// m=64 MiB, p=4, a 16-byte zero salt and Nh bytes of output. These are the
// defaults of @serenity-kit/opaque (opaque-ke with its argon2 feature), the
// second recommended option of RFC 9106, Section 4.
var DefaultArgon2id = Argon2id{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// TestArgon2id is a cheap Argon2id (t=1, m=64 KiB, p=1) for tests only. It
// protects nothing; clients refuse it under DefaultKSFBounds.
var TestArgon2id = Argon2id{Time: 1, MemoryKiB: 64, Threads: 1}

// QPChat returns qpchat's configuration: OPRF ristretto255-SHA512, 3DH over
// ristretto255, SHA-512 with HKDF-SHA512 and HMAC-SHA512, DefaultArgon2id
// as KSF, an empty context. qpchat leaves identities unset, so they default
// to the public keys (RFC 9807, Section 4.1.2).
func QPChat() *Config {
	return &Config{OPRF: oprf.SuiteRistretto255, Hash: crypto.SHA512, Group: Ristretto255, KSF: DefaultArgon2id}
}

// QPChatTest returns QPChat with TestArgon2id, so tests do not spend 64 MiB
// of memory per login. Never use it outside tests.
func QPChatTest() *Config {
	c := QPChat()
	c.KSF = TestArgon2id
	return c
}

// errConfig is returned by every operation on an incomplete Config.
var errConfig = errors.New("opaque: incomplete configuration")

// sizes are the lengths of RFC 9807, Section 7 for one Config.
type sizes struct {
	nh  int // Nh: hash output, also Nx (KDF) and Nm (MAC) for HKDF/HMAC
	npk int // Npk: AKE public key
	nsk int // Nsk: AKE private key
	noe int // Noe: serialized OPRF element
	nok int // Nok: OPRF scalar (private key)
}

func (c *Config) sizes() (sizes, error) {
	if c == nil || c.OPRF == nil || c.Group == nil || c.KSF == nil || !c.Hash.Available() {
		return sizes{}, errConfig
	}
	p := c.OPRF.Group().Params()
	return sizes{
		nh:  c.Hash.Size(),
		npk: c.Group.PublicKeySize(),
		nsk: c.Group.PrivateKeySize(),
		noe: int(p.CompressedElementLength),
		nok: int(p.ScalarLength),
	}, nil
}

func (c *Config) mustSizes() sizes {
	s, err := c.sizes()
	if err != nil {
		panic(err)
	}
	return s
}

// Message sizes. Each panics on an incomplete Config.

// RegistrationRequestSize returns the length of a RegistrationRequest: Noe.
func (c *Config) RegistrationRequestSize() int { return c.mustSizes().noe }

// RegistrationResponseSize returns the length of a RegistrationResponse:
// Noe + Npk.
func (c *Config) RegistrationResponseSize() int { s := c.mustSizes(); return s.noe + s.npk }

// RegistrationRecordSize returns the length of a RegistrationRecord:
// Npk + Nh + Nn + Nm.
func (c *Config) RegistrationRecordSize() int {
	s := c.mustSizes()
	return s.npk + s.nh + NonceSize + s.nh
}

// KE1Size returns the length of KE1: Noe + Nn + Npk.
func (c *Config) KE1Size() int { s := c.mustSizes(); return s.noe + NonceSize + s.npk }

// KE2Size returns the length of KE2: Noe + Nn + (Npk + Nn + Nm) + Nn + Npk + Nm.
func (c *Config) KE2Size() int {
	s := c.mustSizes()
	return s.noe + NonceSize + s.npk + NonceSize + s.nh + NonceSize + s.npk + s.nh
}

// KE3Size returns the length of KE3: Nm.
func (c *Config) KE3Size() int { return c.mustSizes().nh }

// String names the configuration for logs.
func (c *Config) String() string {
	if c == nil || c.OPRF == nil || c.Group == nil || c.KSF == nil {
		return "opaque: incomplete configuration"
	}
	return fmt.Sprintf("OPAQUE-3DH(OPRF %s, AKE %s, %s, KSF %s)", c.OPRF.Identifier(), c.Group, c.Hash, c.KSF)
}
