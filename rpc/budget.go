package rpc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Budget is a byte budget in a tree: a node gives each connection a
// Budget whose parent is its client address's, whose parent is the
// node's total. Charging a Budget charges every ancestor; a reservation
// waits until it fits at every level. Limits are soft for Charge (the
// caller already holds the memory, e.g. an answer that grew) and hard
// for Reserve, so the bound of a level is its limit plus what was
// charged without reservation (see docs/PROTOCOL.md, Memory bounds).
//
// A nil *Budget counts nothing and never waits.
type Budget struct {
	tree   *budgetTree
	parent *Budget
	name   string
	limit  int64 // ≤ 0: no limit at this level

	used     int64 // guarded by tree.mu
	detached bool  // guarded by tree.mu; see Detach
}

// budgetTree is the lock and wake-up signal shared by a Budget and its
// descendants: a release anywhere can make room for a waiter anywhere.
type budgetTree struct {
	mu      sync.Mutex
	wake    chan struct{} // closed (and replaced) when bytes are released
	waiters int           // Reserve calls waiting on wake
}

// NewBudget returns a root Budget of limit bytes (≤ 0: unlimited) named
// name in errors ("total").
func NewBudget(name string, limit int64) *Budget {
	return &Budget{tree: &budgetTree{wake: make(chan struct{})}, name: name, limit: limit}
}

// Child returns a Budget of limit bytes (≤ 0: unlimited) under b.
func (b *Budget) Child(name string, limit int64) *Budget {
	if b == nil {
		return NewBudget(name, limit)
	}
	return &Budget{tree: b.tree, parent: b, name: name, limit: limit}
}

// Name returns the name given to NewBudget or Child.
func (b *Budget) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// Limit returns the limit of this level.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Used returns the bytes charged to b and its descendants.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	return b.used
}

// Waiting returns how many reservations wait anywhere in b's tree: the
// connections whose reading is paused, and parked calls taking their
// room back.
func (b *Budget) Waiting() int {
	if b == nil {
		return 0
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	return b.tree.waiters
}

// ErrBudget is wrapped by the error of a reservation that timed out.
var ErrBudget = errors.New("rpc: byte budget exhausted")

// errBudgetStopped is returned by Reserve when stop is closed.
var errBudgetStopped = errors.New("rpc: stopped waiting for the byte budget")

// blocking returns the first level, from b up, where n more bytes do not
// fit, or nil. A level with nothing charged always fits, so that one
// item larger than a limit still goes through (alone). The caller holds
// tree.mu.
func (b *Budget) blocking(n int64) *Budget {
	for l := b; l != nil; l = l.parent {
		if l.limit > 0 && l.used > 0 && l.used+n > l.limit {
			return l
		}
		if l.detached {
			break
		}
	}
	return nil
}

func (b *Budget) add(n int64) {
	for l := b; l != nil; l = l.parent {
		l.used += n
		if l.detached {
			return
		}
	}
}

// Detach takes what is still charged to b out of its ancestors and cuts
// b off them: later charges and releases of b count at b only. A node
// detaches a connection's Budget when the connection ends, so bytes the
// RPC layer never released cannot leak into the address and total.
func (b *Budget) Detach() {
	if b == nil {
		return
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	if b.detached {
		return
	}
	if b.parent != nil && b.used != 0 {
		b.parent.add(-b.used)
		b.tree.wakeAll()
	}
	b.detached = true
}

// wakeAll wakes the waiting reservations; the caller holds mu.
func (t *budgetTree) wakeAll() {
	if t.waiters > 0 {
		close(t.wake)
		t.wake = make(chan struct{})
	}
}

// Reserve waits until n bytes fit at b and every ancestor, then charges
// them. It gives up with an error wrapping ErrBudget after timeout (if
// positive), naming the level that was full, or when stop is closed.
// Release the bytes with Release.
func (b *Budget) Reserve(n int64, stop <-chan struct{}, timeout time.Duration) error {
	if b == nil || n <= 0 {
		return nil
	}
	var timer <-chan time.Time
	for {
		b.tree.mu.Lock()
		full := b.blocking(n)
		if full == nil {
			b.add(n)
			b.tree.mu.Unlock()
			return nil
		}
		wake := b.tree.wake
		b.tree.waiters++
		b.tree.mu.Unlock()
		if timer == nil && timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			timer = t.C
		}
		var err error
		select {
		case <-wake:
		case <-stop:
			err = errBudgetStopped
		case <-timer:
			err = fmt.Errorf("%w: the %s budget of %d bytes stayed full for %v", ErrBudget, full.name, full.limit, timeout)
		}
		b.tree.mu.Lock()
		b.tree.waiters--
		b.tree.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Charge counts n bytes at b and every ancestor without waiting, even
// past a limit: the memory is held already. It returns the first level,
// from b up, that is now over its limit, or nil.
func (b *Budget) Charge(n int64) (over *Budget) {
	if b == nil || n == 0 {
		return nil
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	b.add(n)
	for l := b; l != nil; l = l.parent {
		if l.limit > 0 && l.used > l.limit {
			return l
		}
		if l.detached {
			break
		}
	}
	return nil
}

// Release uncounts n bytes charged by Reserve or Charge and wakes the
// waiters.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.tree.mu.Lock()
	b.add(-n)
	b.tree.wakeAll()
	b.tree.mu.Unlock()
}
