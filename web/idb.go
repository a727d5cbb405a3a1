//go:build js && wasm

package main

// IndexedDB, where the browser client keeps each profile's state image
// (node/store's in-memory database: sealed records under the
// passphrase's key, the same layout as a state file).

import (
	"errors"
	"fmt"
	"syscall/js"
)

const (
	idbName  = "qpchat"
	idbStore = "state"
)

// await waits for a JS promise (from a goroutine, never the event
// loop's) and returns its value or its rejection.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var ok, fail js.Func
	ok = js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{v: args[0]}
		return nil
	})
	fail = js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 && !args[0].IsUndefined() && !args[0].IsNull() {
			msg = args[0].Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	p.Call("then", ok, fail)
	r := <-ch
	return r.v, r.err
}

// wait waits for an IDBRequest's success (or, with complete, an
// IDBTransaction's completion) and returns the request's result.
func wait(req js.Value, complete bool) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	okEvent := "success"
	if complete {
		okEvent = "complete"
	}
	ok := js.FuncOf(func(js.Value, []js.Value) any {
		if complete {
			ch <- result{}
		} else {
			ch <- result{v: req.Get("result")}
		}
		return nil
	})
	fail := js.FuncOf(func(js.Value, []js.Value) any {
		msg := "failed"
		if e := req.Get("error"); !e.IsUndefined() && !e.IsNull() {
			msg = e.Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	req.Call("addEventListener", okEvent, ok)
	req.Call("addEventListener", "error", fail)
	if complete {
		req.Call("addEventListener", "abort", fail)
	}
	r := <-ch
	return r.v, r.err
}

// idb is the open IndexedDB database.
type idb struct{ db js.Value }

func openIDB() (*idb, error) {
	factory := js.Global().Get("indexedDB")
	if factory.IsUndefined() {
		return nil, errors.New("this browser has no IndexedDB (private mode?)")
	}
	req := factory.Call("open", idbName, 1)
	upgrade := js.FuncOf(func(js.Value, []js.Value) any {
		req.Get("result").Call("createObjectStore", idbStore)
		return nil
	})
	defer upgrade.Release()
	req.Call("addEventListener", "upgradeneeded", upgrade)
	db, err := wait(req, false)
	if err != nil {
		return nil, fmt.Errorf("opening IndexedDB: %w", err)
	}
	return &idb{db: db}, nil
}

// get returns the image stored under key, nil if none.
func (d *idb) get(key string) ([]byte, error) {
	tx := d.db.Call("transaction", idbStore, "readonly")
	v, err := wait(tx.Call("objectStore", idbStore).Call("get", key), false)
	if err != nil {
		return nil, fmt.Errorf("reading IndexedDB: %w", err)
	}
	if v.IsUndefined() || v.IsNull() {
		return nil, nil
	}
	b := make([]byte, v.Get("byteLength").Int())
	js.CopyBytesToGo(b, v)
	return b, nil
}

// put stores image under key and returns once the transaction is
// complete (durability "strict": on disk, where the browser allows it).
func (d *idb) put(key string, image []byte) error {
	arr := js.Global().Get("Uint8Array").New(len(image))
	js.CopyBytesToJS(arr, image)
	opts := js.Global().Get("Object").New()
	opts.Set("durability", "strict")
	tx := d.db.Call("transaction", idbStore, "readwrite", opts)
	tx.Call("objectStore", idbStore).Call("put", arr, key)
	if _, err := wait(tx, true); err != nil {
		return fmt.Errorf("writing IndexedDB: %w", err)
	}
	return nil
}
