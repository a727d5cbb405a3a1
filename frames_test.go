package main

import (
	"strings"
	"testing"
	"time"

	"qpchat/node/proto"
	"qpchat/node/server"
)

// TestMaxMessageSizeFitsClientFrames: a node may not accept messages its
// clients cannot receive in one frame.
func TestMaxMessageSizeFitsClientFrames(t *testing.T) {
	f := ServeLimitFlags{MaxMessageSize: proto.MaxMessageSize, MaxQueueLength: 7, MaxKeyPackages: 3, MaxGroupSize: 9,
		MaxDevices: 4, MaxBatch: 5, LoginRateName: 1, LoginRateAddr: 2, MaxLoginDelay: 1, KPFetchRate: 6,
		MaxConnsPerAddr: 8, MaxConns: 10, MaxCallsPerConn: 11, MaxFetchWait: 1, RetryAbove: 12, LoginSessionTTL: 3,
		MaxConnBuffer: 32 << 20, MaxAddrBuffer: 128 << 20, MaxTotalBuffer: 1 << 30,
		MaxFileSize: 100 << 20, FileQuota: 1 << 30, FileTTL: time.Hour}
	var cfg server.Config
	if err := f.apply(&cfg); err != nil {
		t.Fatalf("--max-message-size %d refused: %v", f.MaxMessageSize, err)
	}
	f.MaxMessageSize++
	err := f.apply(&cfg)
	if err == nil || !strings.Contains(err.Error(), "--max-message-size") {
		t.Errorf("--max-message-size %d: %v, want a refusal", f.MaxMessageSize, err)
	}
	if proto.MaxMessageSize+1<<20 > proto.MinClientFrameSize || proto.MaxFetchAnswerBytes+1<<20 > proto.MinClientFrameSize {
		t.Error("the largest message or fetch answer leaves no room for framing in a client frame")
	}
	if clientLimits.MaxMessageSize < proto.MinClientFrameSize {
		t.Errorf("the client accepts frames of %d bytes, less than proto.MinClientFrameSize", clientLimits.MaxMessageSize)
	}
}
