package mls

import (
	"bytes"
	"fmt"
	"testing"

	"qpchat/internal/vectors"
)

// welcomeTest mirrors an entry of welcome.json (FORMAT.md, "Welcome").
type welcomeTest struct {
	CipherSuite uint16      `json:"cipher_suite"`
	InitPriv    vectors.Hex `json:"init_priv"`
	SignerPub   vectors.Hex `json:"signer_pub"`
	KeyPackage  vectors.Hex `json:"key_package"`
	Welcome     vectors.Hex `json:"welcome"`
}

// TestWelcomeVectors decrypts each Welcome of welcome.json with the init
// key, verifies the GroupInfo signature with the signer's key and its
// confirmation tag with the key schedule of the joiner secret.
func TestWelcomeVectors(t *testing.T) {
	var tests []welcomeTest
	loadMLSVectors(t, "welcome.json", &tests)
	tally := newSuiteTally("welcome.json")
	for i, tc := range tests {
		tally.run(t, CipherSuite(tc.CipherSuite), i, func(t *testing.T, _ *cipherSuite) {
			if err := testWelcome(tc); err != nil {
				t.Error(err)
			}
		})
	}
	tally.log(t)
}

func testWelcome(tc welcomeTest) error {
	cs, err := CipherSuite(tc.CipherSuite).suite()
	if err != nil {
		return err
	}
	kp, err := parseKeyPackageMessage(tc.KeyPackage)
	if err != nil {
		return err
	}
	if kp.CipherSuite != cs.id {
		return errorf("key package suite %d", kp.CipherSuite)
	}
	ref, err := MakeKeyPackageRef(kp)
	if err != nil {
		return err
	}
	msg, err := UnmarshalMLSMessage(tc.Welcome)
	if err != nil {
		return err
	}
	if msg.WireFormat != WireFormatWelcome {
		return errorf("wire format %d", msg.WireFormat)
	}
	ow, err := openWelcome(cs, msg.Welcome, ref, tc.InitPriv, Config{}.psks(nil))
	if err != nil {
		return err
	}
	// The signature verifies over the GroupInfo as received and as
	// encoded again, and the two are the same bytes.
	if err := verifyGroupInfo(cs, ow.groupInfo, tc.SignerPub, ow.groupInfoSigned); err != nil {
		return err
	}
	if err := verifyGroupInfo(cs, ow.groupInfo, tc.SignerPub, nil); err != nil {
		return err
	}
	tbs, err := ow.groupInfo.marshalTBS()
	if err != nil {
		return err
	}
	if !bytes.Equal(ow.groupInfoSigned, labeledInput(labelGroupInfoTBS, tbs)) {
		return errorf("received GroupInfoTBS differs from its encoding")
	}
	secrets, err := welcomeEpoch(cs, ow)
	if err != nil {
		return err
	}
	secrets.zero()
	return nil
}

func errorf(format string, args ...any) error { return fmt.Errorf("test: "+format, args...) }
