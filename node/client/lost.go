package client

// Losses the client reports instead of failing: messages whose records
// were damaged at the node (docs/PROTOCOL.md, "Damaged queued records"),
// and records damaged in this device's own state (State.Check).

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	capnp "capnproto.org/go/capnp/v3"
)

// deliveryLost marks a sequence number the node reported lost among the
// deliveries of a batch; it is never a kind on the wire.
const deliveryLost DeliveryKind = 0xff

// maxLostListed bounds the sequence numbers named in one history entry.
const maxLostListed = 20

// decodeLost copies the lost sequence numbers of a fetch answer, bounded
// like its messages.
func decodeLost(l capnp.UInt64List, err error) ([]uint64, error) {
	if err != nil {
		return nil, err
	}
	if l.Len() > maxFetched {
		return nil, fmt.Errorf("client: the node reported %d lost messages in one answer", l.Len())
	}
	var out []uint64
	for i := range l.Len() {
		out = append(out, l.At(i))
	}
	return out, nil
}

// withLost merges the lost sequence numbers into the deliveries, in
// sequence order, as deliveries of kind deliveryLost, so that the batch
// moves past them like past applied deliveries. Duplicates of a delivery
// are dropped.
func withLost(ds []Delivery, lost []uint64) []Delivery {
	if len(lost) == 0 {
		return ds
	}
	out := make([]Delivery, 0, len(ds)+len(lost))
	seen := make(map[uint64]bool, len(ds))
	for _, d := range ds {
		seen[d.Seq] = true
	}
	out = append(out, ds...)
	for _, seq := range lost {
		if !seen[seq] {
			seen[seq] = true
			out = append(out, Delivery{Seq: seq, Kind: deliveryLost})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// lostNote is the history entry of the lost deliveries of one batch.
type lostNote struct {
	ev   *Event
	seqs []uint64
}

// noteLost records seq as lost in the batch's history: one entry per
// batch, "N message(s) lost on the node: seq …", placed where the first
// loss was.
func (c *Client) noteLost(b *batch, n *lostNote, seq uint64) {
	if n.ev == nil {
		n.ev = &Event{Kind: EventLost, Time: c.now().Unix()}
		b.events = append(b.events, n.ev)
	}
	n.seqs = append(n.seqs, seq)
	n.ev.Text = lostText(n.seqs)
}

// lostText describes lost sequence numbers.
func lostText(seqs []uint64) string {
	list := seqs
	more := ""
	if len(list) > maxLostListed {
		list, more = list[:maxLostListed], fmt.Sprintf(" and %d more", len(seqs)-maxLostListed)
	}
	strs := make([]string, len(list))
	for i, s := range list {
		strs[i] = strconv.FormatUint(s, 10)
	}
	return fmt.Sprintf("%d message(s) lost on the node (damaged in its store): seq %s%s; if one changed a group, a member must remove and re-add this device there",
		len(seqs), strings.Join(strs, ", "), more)
}
