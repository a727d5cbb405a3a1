package proto

import "golang.org/x/crypto/cryptobyte"

type builder = cryptobyte.Builder

func cryptoString(b []byte) cryptobyte.String { return cryptobyte.String(b) }
