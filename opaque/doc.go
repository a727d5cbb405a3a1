// Package opaque implements OPAQUE-3DH, the augmented password-authenticated
// key exchange of [RFC 9807], on circl's OPRF ([RFC 9497], base mode).
//
// The package is generic over the configuration of RFC 9807, Section 7 (a
// [Config]): the OPRF suite, the hash with HKDF and HMAC, the
// key-stretching function ([KSF]), the AKE group ([Ristretto255], [P256] or
// [X25519]) and the context. It reproduces the nine test vectors of the
// RFC (ristretto255, ristretto255 with X25519 3DH, and P-256; real and
// fake), every output and intermediate value included. qpchat uses
// [QPChat]: OPRF ristretto255-SHA512, 3DH over ristretto255, SHA-512,
// Argon2id (t=3, m=64 MiB, p=4, 16-byte zero salt, 64-byte output), empty
// context and unset identities — the defaults of @serenity-kit/opaque, so
// that a standard client configured alike can log in.
//
// # Flow
//
// The client and the server are separate processes; every message has a
// Marshal method and a Config.ParseXxx function with an exact length.
//
//	Registration
//	  client: st, req := cfg.NewClientRegistration(rand, password)      → req
//	  server: resp := srv.RegistrationResponse(req, credentialID)       → resp
//	  client: record, exportKey := st.Finish(rand, resp, cfg.KSF, ids)  → record, KSF
//	  server: stores record and the KSF's MarshalBinary for credentialID
//
//	Login
//	  client: st, ke1 := cfg.NewClientLogin(rand, password)              → ke1
//	  server: ke2, sl := srv.Login(rand, ke1, record, credentialID, ids)  → ke2, KSF
//	          (or srv.LoginUnknown(rand, ke1, credentialID, ids) and cfg.KSF)
//	  client: KSFBounds.Check(ksf); res := st.Finish(ke2, ksf, ids)      → res.KE3
//	  server: sessionKey := sl.Finish(ke3)
//
// The server's long-term state is a [ServerSetup] (OPRF seed and key pair)
// made once with [Config.GenerateServerSetup]. Randomness always comes in
// through an io.Reader (crypto/rand.Reader in production); the test vectors
// replay theirs through the same entry points.
//
// # Checks
//
// Every element and key that arrives — blinded and evaluated OPRF elements,
// key shares, the client public key of a record, the server public key of a
// registration response or of an unmasked login response — must have the
// exact length and the canonical encoding, and must not be the identity
// (for X25519: canonical u-coordinate, not of small order). circl accepts
// the identity and, for P-256, other encodings in places, so these checks
// happen here, in the parsers and again where the values are used. MACs
// are compared in constant time.
//
// # Unknown users
//
// [Server.LoginUnknown] answers a login for a name without a record from a
// fake record (RFC 9807, Section 10.9): client public key and masking key
// derived from the OPRF seed and the credential identifier, all-zero
// envelope. Its KE2 has the size and form of a real one, and repeated
// attempts for one name see the same OPRF key and record, so an attacker
// cannot tell from the answers whether the name exists. The server must
// also send the same key-stretching parameters it would send for a fresh
// record (the Config's KSF).
//
// # Caveats
//
//   - Key-stretching parameters are chosen by the server per record; a
//     client must check them with [KSFBounds.Check] before [ClientLogin.Finish],
//     or a malicious server could make stolen records cheap to attack (low
//     parameters) or exhaust the client (high ones).
//   - Timing: the work for a real and a fake record is the same sequence of
//     operations, but the surrounding store lookup is the caller's to make
//     uniform.
//   - Secrets are wiped when a state finishes, best effort: circl keeps the
//     OPRF key and some scalars in values this package cannot reach, and
//     Go may leave copies on the stack.
//   - circl's scalar arithmetic for P-256 is not constant time; the P-256
//     configuration exists for the test vectors. qpchat uses ristretto255.
//   - The registration record is not a password equivalent, but its masking
//     key and envelope should be stored confidentially (qpchat's store seals
//     them), since an attacker with a record can run an offline dictionary
//     attack whose per-guess cost is the KSF.
//   - An account whose record still uses older key-stretching parameters
//     answers with those, while unknown names get the current defaults
//     (DESIGN, OPAQUE); until such records are re-registered, the
//     parameters tell old accounts apart from absent ones.
//   - Section references in the comments follow the headings of
//     draft-irtf-cfrg-opaque-18, published unchanged as RFC 9807.
//
// [RFC 9807]: https://www.rfc-editor.org/rfc/rfc9807
// [RFC 9497]: https://www.rfc-editor.org/rfc/rfc9497
package opaque
