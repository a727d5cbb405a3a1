package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"qpchat/node/store"
	"qpchat/rpc"
)

// Key succession of the node's self-signed identity (rpc/succession.go
// has the scheme and its threat model). The data directory holds:
//
//	server-cert.pem     the current certificate, committing to the next key
//	server-key.pem      the current key
//	server-retired.pem  certificates of retired keys, newest first (sent
//	                    after the leaf so that clients follow the chain)
//	server-next-key.pem the next key, unless IdentityConfig.NextKeyFile
//	                    puts it elsewhere (move it offline)
//
// rotate-identity stages every new file as NAME.new, then writes a
// journal naming them, then renames them into place: a crash before the
// journal leaves the old identity; after it, the next start (or run of
// rotate-identity) finishes the renames.

const (
	nextKeyFileName = "server-next-key.pem"
	retiredFileName = "server-retired.pem"
	journalFileName = "rotation.journal"
	maxRetired      = 8 // retired certificates sent: clients offline for more rotations must re-pin
)

// IdentityConfig configures the self-signed identity's succession.
type IdentityConfig struct {
	// NextKeyFile holds the next key's private key. Default
	// DataDir/server-next-key.pem; created with the first commitment.
	// The node itself needs it only if its certificate has no
	// commitment yet; rotate-identity needs it.
	NextKeyFile string
}

// NextKeyPath returns where the next key lives for cfg.
func NextKeyPath(cfg Config) string {
	if cfg.Identity.NextKeyFile != "" {
		return cfg.Identity.NextKeyFile
	}
	return filepath.Join(cfg.DataDir, nextKeyFileName)
}

// selfSigned makes the node's certificate for key, committing to the key
// with fingerprint next.
func selfSigned(key ed25519.PrivateKey, next string) ([]byte, error) {
	ext, err := rpc.SuccessorExtension(next)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("server: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "qpchat node"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{ext},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("server: create certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func keyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readKey reads an Ed25519 private key in PKCS#8 PEM.
func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("server: %s holds no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("server: %s is not an Ed25519 key", path)
	}
	return ek, nil
}

func keyFingerprint(k ed25519.PrivateKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return "", err
	}
	return rpc.FingerprintOfSPKI(spki), nil
}

// readRetired returns the DER certificates of the retired keys.
func readRetired(dir string) ([][]byte, error) {
	b, err := readBounded(filepath.Join(dir, retiredFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(out) < maxRetired {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fmt.Errorf("server: %s: %w", retiredFileName, err)
		}
		out = append(out, blk.Bytes)
	}
	return out, nil
}

// prepareSuccession gives a self-signed identity without a commitment
// one (creating the next key if its file does not exist) and appends the
// retired certificates to the chain the node sends.
func prepareSuccession(cfg Config, cert tls.Certificate, log *slog.Logger) (tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, err
	}
	next, err := rpc.Successor(leaf)
	if err != nil {
		return cert, err
	}
	if next == "" {
		key, ok := cert.PrivateKey.(ed25519.PrivateKey)
		if !ok {
			return cert, errors.New("server: the identity key is not Ed25519")
		}
		nkPath := NextKeyPath(cfg)
		nk, err := readKey(nkPath)
		if errors.Is(err, fs.ErrNotExist) {
			if _, nk, err = ed25519.GenerateKey(rand.Reader); err == nil {
				var p []byte
				if p, err = keyPEM(nk); err == nil {
					err = writeNewFile(nkPath, p)
				}
			}
		}
		if err != nil {
			return cert, fmt.Errorf("server: next key: %w", err)
		}
		if next, err = keyFingerprint(nk); err != nil {
			return cert, err
		}
		certPEM, err := selfSigned(key, next)
		if err != nil {
			return cert, err
		}
		if err := store.WriteFileAtomic(filepath.Join(cfg.DataDir, certFileName), 0o600, func(w io.Writer) error {
			_, err := w.Write(certPEM)
			return err
		}); err != nil {
			return cert, fmt.Errorf("server: %w", err)
		}
		blk, _ := pem.Decode(certPEM)
		cert = tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}
		log.Info("the node's certificate now commits to its next key; keep the next key file apart (offline)", "next", next, "next_key_file", nkPath)
	}
	retired, err := readRetired(cfg.DataDir)
	if err != nil {
		return cert, err
	}
	cert.Certificate = append(cert.Certificate[:1:1], retired...)
	return cert, nil
}

// Rotation is what RotateIdentity did.
type Rotation struct {
	Old, New, Next string // fingerprints: retired key, new current key, its successor
}

// RotateIdentity switches the stopped node of cfg to its committed next
// key, which must be in the next key file, and commits to a fresh
// successor written there in its place. Crash-safe (see above).
func RotateIdentity(cfg Config) (Rotation, error) {
	var r Rotation
	dir := cfg.DataDir
	if err := finishRotation(dir); err != nil {
		return r, err
	}
	certPath, keyPath := filepath.Join(dir, certFileName), filepath.Join(dir, keyFileName)
	cur, err := loadIdentityFiles(certPath, keyPath)
	if err != nil {
		return r, err
	}
	leaf, err := x509.ParseCertificate(cur.Certificate[0])
	if err != nil {
		return r, err
	}
	committed, err := rpc.Successor(leaf)
	if err != nil {
		return r, err
	}
	if committed == "" {
		return r, errors.New("server: the certificate commits to no next key yet; start the node once to make the commitment")
	}
	nkPath := NextKeyPath(cfg)
	nk, err := readKey(nkPath)
	if err != nil {
		return r, fmt.Errorf("server: the next key (--next-key-file): %w", err)
	}
	if fp, err := keyFingerprint(nk); err != nil || fp != committed {
		return r, fmt.Errorf("server: %s is not the committed next key %s (it is %s)", nkPath, committed, fp)
	}
	_, fresh, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return r, err
	}
	freshFP, err := keyFingerprint(fresh)
	if err != nil {
		return r, err
	}
	newCert, err := selfSigned(nk, freshFP)
	if err != nil {
		return r, err
	}
	newKey, err := keyPEM(nk)
	if err != nil {
		return r, err
	}
	freshPEM, err := keyPEM(fresh)
	if err != nil {
		return r, err
	}
	var retired bytes.Buffer
	pem.Encode(&retired, &pem.Block{Type: "CERTIFICATE", Bytes: cur.Certificate[0]})
	old, err := readRetired(dir)
	if err != nil {
		return r, err
	}
	for i, der := range old {
		if i+1 >= maxRetired {
			break
		}
		pem.Encode(&retired, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	files := map[string][]byte{
		certPath:                            newCert,
		keyPath:                             newKey,
		filepath.Join(dir, retiredFileName): retired.Bytes(),
		nkPath:                              freshPEM,
	}
	if err := commitFiles(dir, files); err != nil {
		return r, err
	}
	return Rotation{Old: rpc.Fingerprint(leaf), New: committed, Next: freshFP}, nil
}

// commitFiles replaces files all or nothing across a crash: stage, then
// journal, then rename.
func commitFiles(dir string, files map[string][]byte) error {
	var finals []string
	for path, data := range files {
		staged := path + ".new"
		os.Remove(staged)
		if err := writeNewFile(staged, data); err != nil {
			return err
		}
		finals = append(finals, path)
	}
	for _, p := range finals {
		if err := store.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	j, err := json.Marshal(finals)
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, journalFileName), 0o600, func(w io.Writer) error {
		_, err := w.Write(j)
		return err
	}); err != nil {
		return err
	}
	return finishRotation(dir)
}

// finishRotation completes a rotation whose journal was written: it
// renames the staged files into place and removes the journal.
func finishRotation(dir string) error {
	jp := filepath.Join(dir, journalFileName)
	b, err := readBounded(jp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var finals []string
	if err := json.Unmarshal(b, &finals); err != nil {
		return fmt.Errorf("server: %s is damaged: %v", jp, err)
	}
	for _, p := range finals {
		if err := os.Rename(p+".new", p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server: finishing the key rotation: %w", err)
		}
		if err := store.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return os.Remove(jp)
}
