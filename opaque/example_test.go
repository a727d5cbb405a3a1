package opaque_test

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"qpchat/opaque"
)

// Example registers a user and logs in, passing every message as bytes as
// a client and a server in different processes would.
func Example() {
	cfg := opaque.QPChatTest() // opaque.QPChat() in production
	user := []byte("alice")    // the credential identifier
	password := []byte("correct horse battery staple")

	// Server, once: make and keep the setup.
	setup, err := cfg.GenerateServerSetup(rand.Reader)
	if err != nil {
		panic(err)
	}
	srv, err := cfg.NewServer(setup)
	if err != nil {
		panic(err)
	}

	// Registration.
	reg, req, err := cfg.NewClientRegistration(rand.Reader, password)
	if err != nil {
		panic(err)
	}
	reqAtServer, err := cfg.ParseRegistrationRequest(req.Marshal())
	if err != nil {
		panic(err)
	}
	resp, err := srv.RegistrationResponse(reqAtServer, user)
	if err != nil {
		panic(err)
	}
	respAtClient, err := cfg.ParseRegistrationResponse(resp.Marshal())
	if err != nil {
		panic(err)
	}
	record, exportKey, err := reg.Finish(rand.Reader, respAtClient, cfg.KSF, opaque.Identities{})
	if err != nil {
		panic(err)
	}
	ksfBytes, _ := cfg.KSF.MarshalBinary()
	storedRecord, storedKSF := record.Marshal(), ksfBytes // what the server keeps

	// Login.
	login, ke1, err := cfg.NewClientLogin(rand.Reader, password)
	if err != nil {
		panic(err)
	}
	ke1AtServer, err := cfg.ParseKE1(ke1.Marshal())
	if err != nil {
		panic(err)
	}
	rec, err := cfg.ParseRegistrationRecord(storedRecord)
	if err != nil {
		panic(err)
	}
	ke2, serverLogin, err := srv.Login(rand.Reader, ke1AtServer, rec, user, opaque.Identities{})
	if err != nil {
		panic(err)
	}
	ke2AtClient, err := cfg.ParseKE2(ke2.Marshal())
	if err != nil {
		panic(err)
	}
	ksf, err := opaque.ParseKSF(storedKSF)
	if err != nil {
		panic(err)
	}
	if err := opaque.TestKSFBounds.Check(ksf); err != nil { // DefaultKSFBounds in production
		panic(err)
	}
	res, err := login.Finish(ke2AtClient, ksf, opaque.Identities{})
	if err != nil {
		panic(err)
	}
	ke3AtServer, err := cfg.ParseKE3(res.KE3.Marshal())
	if err != nil {
		panic(err)
	}
	sessionKey, err := serverLogin.Finish(ke3AtServer)
	if err != nil {
		panic(err)
	}

	fmt.Println("same session key:", bytes.Equal(sessionKey, res.SessionKey))
	fmt.Println("same export key:", bytes.Equal(exportKey, res.ExportKey))
	fmt.Println("KE1, KE2, KE3 sizes:", len(ke1.Marshal()), len(ke2.Marshal()), len(res.KE3.Marshal()))
	// Output:
	// same session key: true
	// same export key: true
	// KE1, KE2, KE3 sizes: 96 320 64
}
