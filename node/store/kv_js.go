//go:build js

package store

import (
	"errors"
	"time"
)

// In a browser there are no files: the state lives in memory and
// IndexedDB (OpenMemory). These are the file operations' answers there.

var errNoFiles = errors.New("store: no database files in a browser; use OpenMemory")

// Open is not available in a browser; see OpenMemory.
func Open(path string, opts Options) (*DB, error) { return nil, errNoFiles }

// InUse is not available in a browser.
func InUse(path string, timeout time.Duration) (bool, error) { return false, errNoFiles }

// CheckFile is not available in a browser.
func CheckFile(path string) error { return errNoFiles }

func replaceHeader(path string, fn func(raw []byte) ([]byte, error)) error { return errNoFiles }

// Compact is not available in a browser.
func Compact(dst, src string) (before, after int64, err error) { return 0, 0, errNoFiles }
