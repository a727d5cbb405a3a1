// Package bench drives a running qpchat node over real QUIC to measure
// it (`qpchat bench`), and holds the small wire client the measurements,
// the node's tests and its durability test use: registration, login,
// devices and the delivery methods, with placeholder MLS messages that
// have valid headers (the node never reads past them).
//
// It is not the user's client (node/client): it keeps no state and does
// no MLS.
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	capnp "capnproto.org/go/capnp/v3"

	"qpchat/mls"
	"qpchat/node/proto"
	"qpchat/opaque"
	"qpchat/rpc"
)

// Conn is a connection to a node with its channel binding.
type Conn struct {
	*rpc.Client
	Exporter []byte // the TLS exporter of this connection
	SPKIHash []byte // SHA-256 of the node's SubjectPublicKeyInfo
	// InviteToken, if set, is sent with registerStart (a node with
	// --registration invite).
	InviteToken string
}

// Dial connects to the node at addr whose key has fingerprint fp.
func Dial(ctx context.Context, addr, fp string) (*Conn, error) {
	cl, err := rpc.Dial(ctx, addr, rpc.DialOptions{
		Fingerprint: fp,
		Limits:      rpc.MessageLimits{MaxMessageSize: proto.MinClientFrameSize},
	})
	if err != nil {
		return nil, err
	}
	exp, err := cl.ChannelBinding()
	if err != nil {
		cl.Close()
		return nil, err
	}
	spki, err := proto.SPKIHashFromFingerprint(cl.Fingerprint)
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &Conn{Client: cl, Exporter: exp, SPKIHash: spki}, nil
}

// Register creates the account user with password and returns the
// login Session and the user key.
func (c *Conn) Register(ctx context.Context, cfg *opaque.Config, user string, password []byte) (rpc.Session, ed25519.PrivateKey, error) {
	st, req, err := cfg.NewClientRegistration(rand.Reader, password)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	f1, rel1 := c.Node.RegisterStart(ctx, func(p rpc.NodeService_registerStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		if c.InviteToken != "" {
			if err := p.SetInviteToken(c.InviteToken); err != nil {
				return err
			}
		}
		return p.SetRequest(req.Marshal())
	})
	defer rel1()
	r1, err := f1.Struct()
	if err != nil {
		return rpc.Session{}, nil, err
	}
	respBytes, _ := r1.Response()
	ksfBytes, _ := r1.Ksf()
	resp, err := cfg.ParseRegistrationResponse(respBytes)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	ksf, err := opaque.ParseKSF(ksfBytes)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	record, exportKey, err := st.Finish(rand.Reader, resp, ksf, opaque.Identities{})
	if err != nil {
		return rpc.Session{}, nil, err
	}
	uk, err := proto.UserKey(exportKey)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	f2, rel2 := c.Node.RegisterFinish(ctx, func(p rpc.NodeService_registerFinish_Params) error {
		if err := p.SetRecord(record.Marshal()); err != nil {
			return err
		}
		return p.SetUserKey(uk.Public().(ed25519.PublicKey))
	})
	defer rel2()
	r2, err := f2.Struct()
	if err != nil {
		return rpc.Session{}, nil, err
	}
	return r2.Session().AddRef(), uk, nil
}

// LoginParts is a login split in its steps, so tests can tamper with
// them.
type LoginParts struct {
	KE2, KSF []byte
	Result   *opaque.LoginResult
}

// LoginStart runs loginStart and the client's side of KE2.
func (c *Conn) LoginStart(ctx context.Context, cfg *opaque.Config, user string, password []byte) (*LoginParts, error) {
	st, ke1, err := cfg.NewClientLogin(rand.Reader, password)
	if err != nil {
		return nil, err
	}
	f, rel := c.Node.LoginStart(ctx, func(p rpc.NodeService_loginStart_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		return p.SetKe1(ke1.Marshal())
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	lp := &LoginParts{}
	b, _ := r.Ke2()
	lp.KE2 = append([]byte(nil), b...)
	b, _ = r.Ksf()
	lp.KSF = append([]byte(nil), b...)
	ke2, err := cfg.ParseKE2(lp.KE2)
	if err != nil {
		return lp, err
	}
	ksf, err := opaque.ParseKSF(lp.KSF)
	if err != nil {
		return lp, err
	}
	lp.Result, err = st.Finish(ke2, ksf, opaque.Identities{})
	return lp, err
}

// LoginFinish sends KE3 with the binding proof for exporter and checks
// the node's proof for the same exporter.
func (c *Conn) LoginFinish(ctx context.Context, lp *LoginParts, exporter []byte) (rpc.Session, error) {
	k, err := proto.ChannelBindingKey(lp.Result.SessionKey)
	if err != nil {
		return rpc.Session{}, err
	}
	f, rel := c.Node.LoginFinish(ctx, func(p rpc.NodeService_loginFinish_Params) error {
		if err := p.SetKe3(lp.Result.KE3.Marshal()); err != nil {
			return err
		}
		return p.SetProof(proto.BindingProof(k, proto.RoleClient, exporter))
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return rpc.Session{}, err
	}
	proof, _ := r.Proof()
	if !proto.VerifyBindingProof(k, proto.RoleServer, exporter, proof) {
		return rpc.Session{}, errors.New("bench: the node's channel-binding proof does not verify")
	}
	return r.Session().AddRef(), nil
}

// Login logs user in and returns the login Session and the user key.
func (c *Conn) Login(ctx context.Context, cfg *opaque.Config, user string, password []byte) (rpc.Session, ed25519.PrivateKey, error) {
	lp, err := c.LoginStart(ctx, cfg, user, password)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	s, err := c.LoginFinish(ctx, lp, c.Exporter)
	if err != nil {
		return rpc.Session{}, nil, err
	}
	uk, err := proto.UserKey(lp.Result.ExportKey)
	return s, uk, err
}

// NewDeviceKey makes a device key from r (crypto/rand if nil).
func NewDeviceKey(r io.Reader) (ed25519.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Pub returns the public key of k.
func Pub(k ed25519.PrivateKey) []byte { return k.Public().(ed25519.PublicKey) }

// RegisterDevice registers dev for user through the login Session.
func (c *Conn) RegisterDevice(ctx context.Context, login rpc.Session, user string, userKey, dev ed25519.PrivateKey) error {
	f, rel := login.RegisterDevice(ctx, func(p rpc.Session_registerDevice_Params) error {
		if err := p.SetDevice(Pub(dev)); err != nil {
			return err
		}
		if err := p.SetCertificate(proto.SignDeviceCert(userKey, user, Pub(dev))); err != nil {
			return err
		}
		return p.SetProof(proto.SignWithLabel(dev, proto.LabelDeviceRegister, proto.DeviceAuth(c.Exporter, user, Pub(dev), c.SPKIHash)))
	})
	defer rel()
	_, err := f.Struct()
	return err
}

// AuthenticateDevice opens a device Session on c, signing exporter.
func (c *Conn) AuthenticateDevice(ctx context.Context, user string, dev ed25519.PrivateKey, exporter []byte) (*Device, error) {
	f, rel := c.Node.AuthenticateDevice(ctx, func(p rpc.NodeService_authenticateDevice_Params) error {
		if err := p.SetUser(user); err != nil {
			return err
		}
		if err := p.SetDevice(Pub(dev)); err != nil {
			return err
		}
		return p.SetSignature(proto.SignWithLabel(dev, proto.LabelDeviceAuth, proto.DeviceAuth(exporter, user, Pub(dev), c.SPKIHash)))
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	return &Device{S: r.Session().AddRef(), Key: dev, User: user}, nil
}

// Device is a device Session.
type Device struct {
	S    rpc.Session
	Key  ed25519.PrivateKey
	User string
}

// Pub returns the device key.
func (d *Device) Pub() []byte { return Pub(d.Key) }

// CreateGroup creates a group.
func (d *Device) CreateGroup(ctx context.Context, id []byte) error {
	f, rel := d.S.CreateGroup(ctx, func(p rpc.Session_createGroup_Params) error { return p.SetGroup(id) })
	defer rel()
	_, err := f.Struct()
	return err
}

func setList(newList func(int32) (capnp.DataList, error), v [][]byte) error {
	l, err := newList(int32(len(v)))
	if err != nil {
		return err
	}
	for i, b := range v {
		if err := l.Set(i, b); err != nil {
			return err
		}
	}
	return nil
}

// CommitResult is commit's answer.
type CommitResult struct {
	Epoch      uint64
	Duplicate  bool
	Overflowed int
}

// Commit submits a commit.
func (d *Device) Commit(ctx context.Context, group, msg []byte, added, removed [][]byte, welcome []byte) (CommitResult, error) {
	f, rel := d.S.Commit(ctx, func(p rpc.Session_commit_Params) error {
		if err := p.SetGroup(group); err != nil {
			return err
		}
		if err := p.SetMessage_(msg); err != nil {
			return err
		}
		if err := setList(p.NewAdded, added); err != nil {
			return err
		}
		if err := setList(p.NewRemoved, removed); err != nil {
			return err
		}
		return p.SetWelcome(welcome)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return CommitResult{}, err
	}
	ov, _ := r.Overflowed()
	return CommitResult{Epoch: r.Epoch(), Duplicate: r.Duplicate(), Overflowed: ov.Len()}, nil
}

// Send sends a batch to group and returns how many devices overflowed.
func (d *Device) Send(ctx context.Context, group []byte, msgs [][]byte) (int, error) {
	f, rel := d.S.Send(ctx, func(p rpc.Session_send_Params) error {
		if err := p.SetGroup(group); err != nil {
			return err
		}
		return setList(p.NewMessages, msgs)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return 0, err
	}
	ov, _ := r.Overflowed()
	return ov.Len(), nil
}

// Message is a queued message as fetched.
type Message struct {
	Seq            uint64
	Group, Sender  []byte
	Kind           rpc.MessageKind
	Added, Removed [][]byte
	Data           []byte
}

// Queue is the queue state of a fetch.
type Queue struct {
	Length, Last   uint64
	Overflowed     bool
	KeyPackagesLow []uint16
	Lost           []uint64 // damaged records the node skipped; ack past them
}

type fetchAnswer interface {
	Messages() (rpc.QueuedMessage_List, error)
	Queue() (rpc.QueueState, error)
	KeyPackagesLow() (capnp.UInt16List, error)
	Lost() (capnp.UInt64List, error)
}

func dataList(l capnp.DataList, err error) [][]byte {
	if err != nil {
		return nil
	}
	out := make([][]byte, l.Len())
	for i := range out {
		b, _ := l.At(i)
		out[i] = append([]byte(nil), b...)
	}
	return out
}

func readFetch(r fetchAnswer) ([]Message, Queue, error) {
	l, err := r.Messages()
	if err != nil {
		return nil, Queue{}, err
	}
	out := make([]Message, l.Len())
	for i := range out {
		e := l.At(i)
		g, _ := e.Group()
		s, _ := e.Sender()
		m, _ := e.Message_()
		out[i] = Message{
			Seq: e.Seq(), Kind: e.Kind(),
			Group: append([]byte(nil), g...), Sender: append([]byte(nil), s...),
			Added: dataList(e.Added()), Removed: dataList(e.Removed()),
			Data: append([]byte(nil), m...),
		}
	}
	q, err := r.Queue()
	if err != nil {
		return nil, Queue{}, err
	}
	st := Queue{Length: q.Length(), Last: q.Last(), Overflowed: q.Overflowed()}
	if low, err := r.KeyPackagesLow(); err == nil {
		for i := 0; i < low.Len(); i++ {
			st.KeyPackagesLow = append(st.KeyPackagesLow, low.At(i))
		}
	}
	if lost, err := r.Lost(); err == nil {
		for i := 0; i < lost.Len(); i++ {
			st.Lost = append(st.Lost, lost.At(i))
		}
	}
	return out, st, nil
}

// Fetch reads the queue after seq after.
func (d *Device) Fetch(ctx context.Context, after uint64, limit uint32) ([]Message, Queue, error) {
	f, rel := d.S.Fetch(ctx, func(p rpc.Session_fetch_Params) error {
		p.SetAfter(after)
		p.SetLimit(limit)
		return nil
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, Queue{}, err
	}
	return readFetch(r)
}

// FetchWait long-polls the queue after seq after.
func (d *Device) FetchWait(ctx context.Context, after uint64, limit uint32, timeout time.Duration) ([]Message, Queue, error) {
	f, rel := d.S.FetchWait(ctx, func(p rpc.Session_fetchWait_Params) error {
		p.SetAfter(after)
		p.SetLimit(limit)
		p.SetTimeoutMillis(uint32(timeout / time.Millisecond))
		return nil
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, Queue{}, err
	}
	return readFetch(r)
}

// Ack acknowledges every message up to seq upTo.
func (d *Device) Ack(ctx context.Context, upTo uint64) error {
	f, rel := d.S.Ack(ctx, func(p rpc.Session_ack_Params) error {
		p.SetUpTo(upTo)
		return nil
	})
	defer rel()
	_, err := f.Struct()
	return err
}

// UploadKeyPackages uploads pool packages and a last resort.
func (d *Device) UploadKeyPackages(ctx context.Context, suite uint16, pool [][]byte, last []byte) (uint32, error) {
	f, rel := d.S.UploadKeyPackages(ctx, func(p rpc.Session_uploadKeyPackages_Params) error {
		p.SetSuite(suite)
		if err := setList(p.NewPackages, pool); err != nil {
			return err
		}
		return p.SetLastResort(last)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return 0, err
	}
	return r.PoolSize(), nil
}

// FetchedKeyPackage is one package of fetchKeyPackages.
type FetchedKeyPackage struct {
	Device, KeyPackage []byte
	LastResort         bool
}

// FetchKeyPackages fetches one package per device of user.
func (d *Device) FetchKeyPackages(ctx context.Context, user string, suite uint16) ([]FetchedKeyPackage, error) {
	f, rel := d.S.FetchKeyPackages(ctx, func(p rpc.Session_fetchKeyPackages_Params) error {
		p.SetSuite(suite)
		return p.SetUser(user)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	l, err := r.Packages()
	if err != nil {
		return nil, err
	}
	out := make([]FetchedKeyPackage, l.Len())
	for i := range out {
		e := l.At(i)
		dv, _ := e.Device()
		kp, _ := e.KeyPackage()
		out[i] = FetchedKeyPackage{Device: append([]byte(nil), dv...), KeyPackage: append([]byte(nil), kp...), LastResort: e.LastResort()}
	}
	return out, nil
}

// FetchKeyPackagesTrust is FetchKeyPackages that also returns the user's
// published approval records and first device.
func (d *Device) FetchKeyPackagesTrust(ctx context.Context, user string, suite uint16) (pkgs []FetchedKeyPackage, approvals [][]byte, first []byte, err error) {
	f, rel := d.S.FetchKeyPackages(ctx, func(p rpc.Session_fetchKeyPackages_Params) error {
		p.SetSuite(suite)
		return p.SetUser(user)
	})
	defer rel()
	r, err := f.Struct()
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := r.Packages()
	if err != nil {
		return nil, nil, nil, err
	}
	for i := range l.Len() {
		e := l.At(i)
		dv, _ := e.Device()
		kp, _ := e.KeyPackage()
		pkgs = append(pkgs, FetchedKeyPackage{Device: append([]byte(nil), dv...), KeyPackage: append([]byte(nil), kp...), LastResort: e.LastResort()})
	}
	approvals = dataList(r.Approvals())
	fd, err := r.FirstDevice()
	if err != nil {
		return nil, nil, nil, err
	}
	return pkgs, approvals, append([]byte(nil), fd...), nil
}

// PublishApproval publishes an approval record (proto.Approval).
func (d *Device) PublishApproval(ctx context.Context, approval []byte) error {
	f, rel := d.S.PublishApproval(ctx, func(p rpc.Session_publishApproval_Params) error { return p.SetApproval(approval) })
	defer rel()
	_, err := f.Struct()
	return err
}

// PrivateMessage returns an MLSMessage holding a PrivateMessage of group
// and epoch with content type ct whose ciphertext is payload. The node
// routes it by its header; only members could decrypt a real one.
func PrivateMessage(group []byte, epoch uint64, ct mls.ContentType, payload []byte) []byte {
	m := &mls.MLSMessage{
		WireFormat: mls.WireFormatPrivateMessage,
		PrivateMessage: &mls.PrivateMessage{
			GroupID: group, Epoch: epoch, ContentType: ct,
			EncryptedSenderData: make([]byte, 28), Ciphertext: payload,
		},
	}
	b, err := m.Marshal()
	if err != nil {
		panic(fmt.Sprintf("bench: %v", err))
	}
	return b
}

// Welcome returns an MLSMessage holding a Welcome for the KeyPackageRefs
// refs (with placeholder ciphertexts).
func Welcome(suite uint16, refs [][]byte) []byte {
	w := &mls.Welcome{CipherSuite: mls.CipherSuite(suite), EncryptedGroupInfo: make([]byte, 16)}
	for _, r := range refs {
		w.Secrets = append(w.Secrets, mls.EncryptedGroupSecrets{
			NewMember:             mls.KeyPackageRef(r),
			EncryptedGroupSecrets: mls.HPKECiphertext{KEMOutput: make([]byte, 32), Ciphertext: make([]byte, 16)},
		})
	}
	b, err := (&mls.MLSMessage{WireFormat: mls.WireFormatWelcome, Welcome: w}).Marshal()
	if err != nil {
		panic(fmt.Sprintf("bench: %v", err))
	}
	return b
}

// KeyPackage makes a KeyPackage MLSMessage of dev (a device of user
// certified by userKey) for suite, and returns it with its reference.
func KeyPackage(suite uint16, user string, userKey, dev ed25519.PrivateKey, now time.Time, lifetime time.Duration) (msg, ref []byte, err error) {
	signer, err := mls.ParseSignaturePrivateKey(mls.CipherSuite(suite), dev.Seed())
	if err != nil {
		return nil, nil, err
	}
	id := proto.CredentialIdentity{User: user, DeviceID: proto.DeviceID(Pub(dev)), Certificate: proto.SignDeviceCert(userKey, user, Pub(dev))}
	cred := mls.Credential{Type: mls.CredentialTypeBasic, Identity: id.Marshal()}
	kp, err := mls.NewKeyPackage(rand.Reader, mls.CipherSuite(suite), cred, signer, now, &mls.KeyPackageOptions{Lifetime: lifetime})
	if err != nil {
		return nil, nil, err
	}
	msg, err = kp.Message()
	if err != nil {
		return nil, nil, err
	}
	r, err := kp.Ref()
	return msg, r, err
}
