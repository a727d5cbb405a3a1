# node.capnp: the wire schema between a qpchat client and a qpchat node.
#
# Cap'n Proto RPC runs on one bidirectional QUIC stream per connection
# (ALPN "qpchat/1", TLS 1.3). The bootstrap capability is NodeService.
# Later milestones add OPAQUE registration and login, device
# authentication and the Session capability they return; add a method
# here only together with the code that implements it.
@0x8b7e1e71e8493249;

using Go = import "/go.capnp";
$Go.package("rpc");
$Go.import("qpchat/rpc");

interface NodeService {
  # The unauthenticated entry point of a node.

  ping @0 (nonce :UInt64) -> (nonce :UInt64, version :Text);
  # Echoes nonce and names the node's software version. It needs no
  # authentication and is what `qpchat client ping` calls.
}
