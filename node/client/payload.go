package client

// Application messages carry a small payload of qpchat's own inside MLS:
//
//	uint8 format (1) ‖ uint16 kind ‖ text ‖ group name ‖ dm flag
//
// kind 1 is a text message, kind 2 group metadata (its name, whether it
// is a direct-message channel), sent by a committer right after it adds
// members so that they learn what the group is called. Kind 3 is a device
// approval: its text field holds an approval record (approvals.go), for
// the user's other devices in the group. Kind 4 is a file: its text field
// holds a file reference (files.go).

const (
	payloadText     = 1
	payloadMeta     = 2
	payloadApproval = 3
)

type payload struct {
	Kind uint16
	Text string
	Name string
	DM   bool
}

func (p *payload) marshal() []byte {
	return newRec().u16(p.Kind).str(p.Text).str(p.Name).boolean(p.DM).done()
}

func parsePayload(b []byte) (*payload, error) {
	r := readRec(b)
	p := &payload{Kind: r.u16(), Text: r.str(), Name: r.str(), DM: r.boolean()}
	if err := r.end(); err != nil {
		return nil, err
	}
	if p.Kind != payloadText && p.Kind != payloadMeta && p.Kind != payloadApproval && p.Kind != payloadFile {
		return nil, errRecord
	}
	return p, nil
}
