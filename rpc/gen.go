package rpc

// The generated code is committed, so a build needs neither the capnp
// compiler nor capnpc-go. To regenerate after editing schemas/*.capnp,
// install the compiler (Debian package capnproto) and the plugin at the
// library's version (go install capnproto.org/go/capnp/v3/capnpc-go@v3.1.0-alpha.1),
// then run go generate ./rpc.

//go:generate sh -c "capnp compile -I$(go list -m -f '{{.Dir}}' capnproto.org/go/capnp/v3)/std --src-prefix=../schemas -ogo:. ../schemas/*.capnp"
