package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"qpchat/mls"
	"qpchat/node/proto"
)

// MaxTextLen returns the length of the longest text whose message (the
// RFC 9420 PrivateMessage Send makes, Section 6.3) fits in limit bytes
// in a group of suite, or -1 when not even an empty text fits. The size
// of a PrivateMessage depends only on the suite, the group id's length
// and the padded plaintext's length, so a throwaway one-member group
// measures it exactly; a node's --max-message-size minus this overhead
// is what a user may send.
func MaxTextLen(suite uint16, limit int) (int, error) {
	if limit <= 0 {
		return -1, nil
	}
	measure, err := textSizer(suite)
	if err != nil {
		return 0, err
	}
	// The size grows with the text by about its length (padding and
	// length prefixes add a few bytes): find the last length that fits
	// near limit minus the size of an empty text.
	base, err := measure(0)
	if err != nil {
		return 0, err
	}
	if base > limit {
		return -1, nil
	}
	lo, hi := 0, limit+1 // size(lo) ≤ limit < size(hi)
	if guess := limit - base; guess > 256 {
		if n, err := measure(guess - 256); err == nil && n <= limit {
			lo = guess - 256
		}
		if n, err := measure(guess + 256); err == nil && n > limit {
			hi = guess + 256
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		n, err := measure(mid)
		if err != nil {
			return 0, err
		}
		if n <= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// textSizer returns a function that measures the message of a text of
// n bytes in a new throwaway group of suite.
func textSizer(suite uint16) (func(n int) (int, error), error) {
	if !proto.SuiteAllowed(suite) {
		return nil, fmt.Errorf("client: cipher suite 0x%04x is not usable with Ed25519 device keys", suite)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := mls.ParseSignaturePrivateKey(mls.CipherSuite(suite), priv.Seed())
	if err != nil {
		return nil, err
	}
	cred := credentialFor("size", pub, make([]byte, ed25519.SignatureSize))
	kp, err := mls.NewKeyPackage(rand.Reader, mls.CipherSuite(suite), cred, s, time.Now(), nil)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 32) // the length of every qpchat group id
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	cfg := mls.Config{ValidateCredential: func(mls.Credential, []byte) error { return nil }}
	g, err := mls.CreateGroup(rand.Reader, cfg, id, kp, nil)
	if err != nil {
		return nil, err
	}
	return func(n int) (int, error) {
		if n < 0 {
			return 0, errors.New("client: negative text length")
		}
		msg, err := g.Protect(rand.Reader, (&payload{Kind: payloadText, Text: strings.Repeat("x", n)}).marshal(), nil)
		if err != nil {
			return 0, fmt.Errorf("client: measuring a message: %w", err)
		}
		return len(msg), nil
	}, nil
}

// tooLargeSizes finds the sizes in a node's refusal of a too large
// message ("... is SIZE bytes, the limit (--max-message-size) is LIMIT").
// (Plain string search: regexp would add 120 KB to the browser client.)
func tooLargeSizes(msg string) (size, limit int, ok bool) {
	const mid = " bytes, the limit (--max-message-size) is "
	i := strings.Index(msg, mid)
	if i < 0 {
		return 0, 0, false
	}
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	j := i
	for j > 0 && digit(msg[j-1]) {
		j--
	}
	k := i + len(mid)
	e := k
	for e < len(msg) && digit(msg[e]) {
		e++
	}
	if !strings.HasSuffix(msg[:j], "is ") {
		return 0, 0, false
	}
	size, err1 := strconv.Atoi(msg[j:i])
	limit, err2 := strconv.Atoi(msg[k:e])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return size, limit, true
}

// ExplainTooLarge turns a node's refusal of a message over its
// --max-message-size (err, from sending text to group) into what the
// user needs: the text's size and, when the group is known, how much text
// fits. ok is false for any other error. c may be nil.
func ExplainTooLarge(ctx context.Context, c *Client, group, text string, err error) (msg string, ok bool) {
	if proto.CodeOf(err) != proto.CodeLimit {
		return "", false
	}
	size, limit, ok := tooLargeSizes(err.Error())
	if !ok {
		return "", false
	}
	fit := ""
	if c != nil {
		if gs, gerr := c.Groups(ctx); gerr == nil {
			for _, g := range gs {
				if g.Name == group {
					if n, merr := MaxTextLen(g.Suite, limit); merr == nil && n >= 0 {
						fit = fmt.Sprintf("; at most %d bytes of text fit", n)
					}
				}
			}
		}
	}
	return fmt.Sprintf("the message of %d bytes was not sent: encrypted it is %d bytes, more than the node's limit (--max-message-size) of %d bytes%s",
		len(text), size, limit, fit), true
}
