package kem

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// AEADID is an HPKE AEAD identifier (RFC 9180, Section 7.3).
type AEADID uint16

// AEAD identifiers. AEADExportOnly gives a context that can only Export.
const (
	AEADAES128GCM        AEADID = 0x0001
	AEADAES256GCM        AEADID = 0x0002
	AEADChaCha20Poly1305 AEADID = 0x0003
	AEADExportOnly       AEADID = 0xFFFF
)

// aeadParams returns Nk and Nn for id.
func aeadParams(id AEADID) (nk, nn int, err error) {
	switch id {
	case AEADAES128GCM:
		return 16, 12, nil
	case AEADAES256GCM:
		return 32, 12, nil
	case AEADChaCha20Poly1305:
		return chacha20poly1305.KeySize, chacha20poly1305.NonceSize, nil
	case AEADExportOnly:
		return 0, 0, nil
	}
	return 0, 0, fmt.Errorf("kem: unsupported AEAD 0x%04x", uint16(id))
}

func newAEAD(id AEADID, key []byte) (cipher.AEAD, error) {
	switch id {
	case AEADAES128GCM, AEADAES256GCM:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	case AEADChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("kem: unsupported AEAD 0x%04x", uint16(id))
}

// Suite is an HPKE ciphersuite: a KEM, a KDF and an AEAD (RFC 9180,
// Section 5). Only the base mode (mode_base, 0x00) is implemented; it is the
// only mode MLS uses (RFC 9420, Section 5.1.3).
type Suite struct {
	KEM  KEM
	KDF  KDFID
	AEAD AEADID
}

// modeBase is mode_base from RFC 9180, Section 5.
const modeBase = 0x00

// Context is an HPKE encryption context (RFC 9180, Section 5.2). A sender's
// context only Seals and a receiver's only Opens; both Export. A Context is
// not safe for concurrent use.
type Context struct {
	suiteID        []byte
	kdf            *kdf
	aead           cipher.AEAD // nil for AEADExportOnly
	baseNonce      []byte
	seq            uint64
	exporterSecret []byte
	sender         bool
}

// SetupBaseSender implements SetupBaseS from RFC 9180, Section 5.1.1. The
// ephemeral key is read from rand.
func (s Suite) SetupBaseSender(rand io.Reader, pk PublicKey, info []byte) (enc []byte, ctx *Context, err error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	if pk == nil || pk.KEM().ID() != s.KEM.ID() {
		return nil, nil, errors.New("kem: public key does not belong to the suite's KEM")
	}
	ss, enc, err := s.KEM.Encap(rand, pk)
	if err != nil {
		return nil, nil, err
	}
	ctx, err = s.keySchedule(ss, info, true)
	clear(ss)
	if err != nil {
		return nil, nil, err
	}
	return enc, ctx, nil
}

// SetupBaseReceiver implements SetupBaseR from RFC 9180, Section 5.1.1.
func (s Suite) SetupBaseReceiver(sk PrivateKey, enc, info []byte) (*Context, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if sk == nil || sk.KEM().ID() != s.KEM.ID() {
		return nil, errors.New("kem: private key does not belong to the suite's KEM")
	}
	ss, err := s.KEM.Decap(sk, enc)
	if err != nil {
		return nil, err
	}
	ctx, err := s.keySchedule(ss, info, false)
	clear(ss)
	return ctx, err
}

// Seal is the single-shot SealBase of RFC 9180, Section 6.1.
func (s Suite) Seal(rand io.Reader, pk PublicKey, info, aad, pt []byte) (enc, ct []byte, err error) {
	enc, ctx, err := s.SetupBaseSender(rand, pk, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err = ctx.Seal(aad, pt)
	if err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// Open is the single-shot OpenBase of RFC 9180, Section 6.1.
func (s Suite) Open(sk PrivateKey, enc, info, aad, ct []byte) ([]byte, error) {
	ctx, err := s.SetupBaseReceiver(sk, enc, info)
	if err != nil {
		return nil, err
	}
	return ctx.Open(aad, ct)
}

func (s Suite) check() error {
	if s.KEM == nil {
		return errors.New("kem: suite has no KEM")
	}
	if _, err := kdfByID(s.KDF); err != nil {
		return err
	}
	_, _, err := aeadParams(s.AEAD)
	return err
}

// Info is an HPKE info string prepared once for the key schedules of many
// contexts of one suite (RFC 9180, Section 5.1): for the two-stage KDFs it
// holds info_hash = LabeledExtract("", "info_hash", info) and psk_id_hash,
// which depend only on the suite and the info, so that a sender sealing
// the same info to many recipients (an MLS Welcome, whose info holds the
// whole encrypted GroupInfo) hashes it once instead of once per recipient.
// The one-stage KDFs absorb the info after the shared secret, so for them
// the info is kept and used as is. The key schedule and every byte it
// produces are unchanged.
type Info struct {
	suite     Suite
	info      []byte // one-stage KDFs only; shared with the caller
	infoHash  []byte
	pskIDHash []byte
}

// PrepareInfo prepares info for SealWithInfo. For the one-stage KDFs info
// is kept, not copied, and must not be modified while the Info is in use.
func (s Suite) PrepareInfo(info []byte) (*Info, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	k, err := kdfByID(s.KDF)
	if err != nil {
		return nil, err
	}
	pi := &Info{suite: s}
	if k.oneStage {
		if len(info) > 0xffff {
			return nil, errors.New("kem: info too long")
		}
		pi.info = info
		return pi, nil
	}
	sid := hpkeSuiteID(s.KEM.ID(), s.KDF, s.AEAD)
	if pi.pskIDHash, err = k.labeledExtract(sid, nil, "psk_id_hash", nil); err != nil {
		return nil, err
	}
	if pi.infoHash, err = k.labeledExtract(sid, nil, "info_hash", info); err != nil {
		return nil, err
	}
	return pi, nil
}

// SealWithInfo is Seal with an info prepared by PrepareInfo for the same
// suite: the output is that of Seal(rand, pk, info, aad, pt).
func (s Suite) SealWithInfo(rand io.Reader, pk PublicKey, info *Info, aad, pt []byte) (enc, ct []byte, err error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	if info == nil || info.suite.KEM.ID() != s.KEM.ID() || info.suite.KDF != s.KDF || info.suite.AEAD != s.AEAD {
		return nil, nil, errors.New("kem: info prepared for another suite")
	}
	if pk == nil || pk.KEM().ID() != s.KEM.ID() {
		return nil, nil, errors.New("kem: public key does not belong to the suite's KEM")
	}
	ss, enc, err := s.KEM.Encap(rand, pk)
	if err != nil {
		return nil, nil, err
	}
	ctx, err := s.keyScheduleWith(ss, info, true)
	clear(ss)
	if err != nil {
		return nil, nil, err
	}
	if ct, err = ctx.Seal(aad, pt); err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// keySchedule implements KeySchedule from RFC 9180, Section 5.1, for the
// base mode (empty psk and psk_id), and its one-stage variant from
// draft-ietf-hpke-pq for the SHAKE KDFs.
func (s Suite) keySchedule(sharedSecret, info []byte, sender bool) (*Context, error) {
	pi, err := s.PrepareInfo(info)
	if err != nil {
		return nil, err
	}
	return s.keyScheduleWith(sharedSecret, pi, sender)
}

// keyScheduleWith is keySchedule with the info prepared by PrepareInfo.
func (s Suite) keyScheduleWith(sharedSecret []byte, pi *Info, sender bool) (*Context, error) {
	k, err := kdfByID(s.KDF)
	if err != nil {
		return nil, err
	}
	nk, nn, err := aeadParams(s.AEAD)
	if err != nil {
		return nil, err
	}
	sid := hpkeSuiteID(s.KEM.ID(), s.KDF, s.AEAD)
	info := pi.info

	var key, baseNonce, exporterSecret []byte
	if k.oneStage {
		if len(info) > 0xffff || len(sharedSecret) > 0xffff {
			return nil, errors.New("kem: info too long")
		}
		// secrets = I2OSP(len(psk), 2) || psk || I2OSP(len(ss), 2) || ss
		secrets := make([]byte, 0, 4+len(sharedSecret))
		secrets = binary.BigEndian.AppendUint16(secrets, 0)
		secrets = binary.BigEndian.AppendUint16(secrets, uint16(len(sharedSecret)))
		secrets = append(secrets, sharedSecret...)
		// context = mode || I2OSP(len(psk_id), 2) || psk_id ||
		//           I2OSP(len(info), 2) || info
		ksContext := []byte{modeBase, 0, 0}
		ksContext = binary.BigEndian.AppendUint16(ksContext, uint16(len(info)))
		ksContext = append(ksContext, info...)
		out, err := k.labeledDerive(sid, secrets, "secret", ksContext, nk+nn+k.nh)
		clear(secrets)
		if err != nil {
			return nil, err
		}
		key, baseNonce, exporterSecret = out[:nk], out[nk:nk+nn], out[nk+nn:]
	} else {
		ksContext := append([]byte{modeBase}, pi.pskIDHash...)
		ksContext = append(ksContext, pi.infoHash...)
		secret, err := k.labeledExtract(sid, sharedSecret, "secret", nil)
		if err != nil {
			return nil, err
		}
		defer clear(secret)
		if s.AEAD != AEADExportOnly {
			if key, err = k.labeledExpand(sid, secret, "key", ksContext, nk); err != nil {
				return nil, err
			}
			if baseNonce, err = k.labeledExpand(sid, secret, "base_nonce", ksContext, nn); err != nil {
				return nil, err
			}
		}
		if exporterSecret, err = k.labeledExpand(sid, secret, "exp", ksContext, k.nh); err != nil {
			return nil, err
		}
	}

	ctx := &Context{
		suiteID:        sid,
		kdf:            k,
		baseNonce:      baseNonce,
		exporterSecret: exporterSecret,
		sender:         sender,
	}
	if s.AEAD != AEADExportOnly {
		if ctx.aead, err = newAEAD(s.AEAD, key); err != nil {
			return nil, err
		}
	}
	clear(key)
	return ctx, nil
}

// computeNonce implements ComputeNonce from RFC 9180, Section 5.2: the
// big-endian sequence number XORed into the base nonce.
func (c *Context) computeNonce() []byte {
	nonce := make([]byte, len(c.baseNonce))
	binary.BigEndian.PutUint64(nonce[len(nonce)-8:], c.seq)
	for i := range nonce {
		nonce[i] ^= c.baseNonce[i]
	}
	return nonce
}

// incrementSeq implements IncrementSeq from RFC 9180, Section 5.2. The
// sequence number is a uint64, far below the 2^96-1 limit of a 12-byte
// nonce, so the limit enforced is that of the counter type.
func (c *Context) incrementSeq() error {
	if c.seq == math.MaxUint64 {
		return errors.New("kem: HPKE message limit reached")
	}
	c.seq++
	return nil
}

// Seal implements ContextS.Seal from RFC 9180, Section 5.2.
func (c *Context) Seal(aad, pt []byte) ([]byte, error) {
	if c.aead == nil {
		return nil, errors.New("kem: export-only context cannot seal")
	}
	if !c.sender {
		return nil, errors.New("kem: receiver context cannot seal")
	}
	if c.seq == math.MaxUint64 {
		return nil, errors.New("kem: HPKE message limit reached")
	}
	ct := c.aead.Seal(nil, c.computeNonce(), pt, aad)
	return ct, c.incrementSeq()
}

// Open implements ContextR.Open from RFC 9180, Section 5.2. A failed Open
// does not advance the sequence number.
func (c *Context) Open(aad, ct []byte) ([]byte, error) {
	if c.aead == nil {
		return nil, errors.New("kem: export-only context cannot open")
	}
	if c.sender {
		return nil, errors.New("kem: sender context cannot open")
	}
	if c.seq == math.MaxUint64 {
		return nil, errors.New("kem: HPKE message limit reached")
	}
	pt, err := c.aead.Open(nil, c.computeNonce(), ct, aad)
	if err != nil {
		return nil, errors.New("kem: HPKE open failed")
	}
	return pt, c.incrementSeq()
}

// Export implements Context.Export from RFC 9180, Section 5.3 (and
// LabeledDerive with label "sec" for the one-stage KDFs). length must be at
// most 255*Nh for the HKDF KDFs and 65535 for the SHAKE ones.
func (c *Context) Export(exporterContext []byte, length int) ([]byte, error) {
	if length < 0 {
		return nil, errors.New("kem: negative export length")
	}
	if c.kdf.oneStage {
		return c.kdf.labeledDerive(c.suiteID, c.exporterSecret, "sec", exporterContext, length)
	}
	return c.kdf.labeledExpand(c.suiteID, c.exporterSecret, "sec", exporterContext, length)
}
