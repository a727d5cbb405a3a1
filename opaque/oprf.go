package opaque

// This file connects OPAQUE to circl's OPRF (RFC 9497, base mode): the
// client's Blind and Finalize, the server's per-user key derivation and
// BlindEvaluate (RFC 9807, Sections 5.2 and 6.3), and the randomized
// password with its key stretching (RFC 9807, Sections 5.2 and 6.3).

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// randomScalarDST separates the scalars drawn by randomScalar from every
// other use of HashToScalar.
const randomScalarDST = "OPAQUE-qpchat-RandomScalar"

// randomScalar draws a uniformly random non-zero scalar of g from rnd.
// circl's ristretto255 RandomScalar ignores the reader it is given, so the
// bytes are read here and mapped with HashToScalar (hash_to_field of
// RFC 9380, Section 5), which reduces 64 bytes of entropy modulo the group
// order: the bias is negligible for both supported groups.
func randomScalar(g group.Group, rnd io.Reader) (group.Scalar, error) {
	var buf [64]byte
	defer clear(buf[:])
	for range 8 {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			return nil, fmt.Errorf("opaque: reading randomness: %w", err)
		}
		s := g.HashToScalar(buf[:], []byte(randomScalarDST))
		if !s.IsZero() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("opaque: randomness source returns degenerate values")
}

// readRandom reads n bytes from rnd.
func readRandom(rnd io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return nil, fmt.Errorf("opaque: reading randomness: %w", err)
	}
	return b, nil
}

// blind implements Blind(password) of RFC 9497, Section 3.3.1 with a given
// blind, returning circl's finalize data and the serialized blinded
// element. circl keeps password and blind by reference in the finalize
// data, so the caller owns and wipes both.
func (c *Config) blind(password []byte, blind group.Scalar) (*oprf.FinalizeData, []byte, error) {
	fin, req, err := oprf.NewClient(c.OPRF).DeterministicBlind([][]byte{password}, []oprf.Blind{blind})
	if err != nil {
		// Only a zero blind or a password that hashes to the identity
		// (probability 2^-250) gets here.
		return nil, nil, fmt.Errorf("opaque: OPRF blind: %v", err)
	}
	msg, err := req.Elements[0].MarshalBinaryCompress()
	if err != nil {
		return nil, nil, fmt.Errorf("opaque: OPRF blind: %v", err)
	}
	return fin, msg, nil
}

// finalize implements Finalize(password, blind, evaluated_element) of
// RFC 9497, Section 3.3.1, after checking the received element.
func (c *Config) finalize(fin *oprf.FinalizeData, evaluatedMessage []byte) ([]byte, error) {
	e, err := decodeElement(c.OPRF.Group(), evaluatedMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: evaluated_message: %v", ErrInvalidMessage, err)
	}
	out, err := oprf.NewClient(c.OPRF).Finalize(fin, &oprf.Evaluation{Elements: []oprf.Evaluated{e}})
	if err != nil {
		return nil, fmt.Errorf("opaque: OPRF finalize: %v", err)
	}
	return out[0], nil
}

// oprfKey derives the per-user OPRF key as CreateRegistrationResponse
// (RFC 9807, Section 5.2) and CreateCredentialResponse (Section 6.3) do:
//
//	seed = Expand(oprf_seed, concat(credential_identifier, "OprfKey"), Nseed)
//	(oprf_key, _) = DeriveKeyPair(seed, "OPAQUE-DeriveKeyPair")
func (c *Config) oprfKey(oprfSeed, credentialID []byte) (*oprf.PrivateKey, error) {
	seed := c.expand(oprfSeed, concat(credentialID, []byte(labelOprfKey)), SeedSize)
	defer zero(seed)
	k, err := oprf.DeriveKey(c.OPRF, oprf.BaseMode, seed, []byte(infoDeriveKeyPair))
	if err != nil {
		return nil, fmt.Errorf("opaque: OPRF DeriveKeyPair: %v", err)
	}
	return k, nil
}

// blindEvaluate implements BlindEvaluate(oprf_key, blinded_element) of
// RFC 9497, Section 3.3.1, after checking the received element: circl's
// server does not refuse the identity.
func (c *Config) blindEvaluate(key *oprf.PrivateKey, blindedMessage []byte) ([]byte, error) {
	e, err := decodeElement(c.OPRF.Group(), blindedMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: blinded_message: %v", ErrInvalidMessage, err)
	}
	ev, err := oprf.NewServer(c.OPRF, key).Evaluate(&oprf.EvaluationRequest{Elements: []oprf.Blinded{e}})
	if err != nil {
		return nil, fmt.Errorf("opaque: OPRF evaluate: %v", err)
	}
	return ev.Elements[0].MarshalBinaryCompress()
}

// randomizedPassword computes
//
//	stretched_oprf_output = Stretch(oprf_output)
//	randomized_password = Extract("", concat(oprf_output, stretched_oprf_output))
//
// (RFC 9807, Sections 5.2 and 6.3).
func (c *Config) randomizedPassword(oprfOutput []byte, ksf KSF) ([]byte, error) {
	if ksf == nil {
		return nil, fmt.Errorf("%w: none given", errInvalidKSF)
	}
	stretched, err := ksf.Stretch(oprfOutput, c.Hash.Size())
	if err != nil {
		return nil, err
	}
	ikm := concat(oprfOutput, stretched)
	defer zero(stretched, ikm)
	return c.extract(nil, ikm), nil
}
