package daemon

// Serving connections: each line read is decoded and dispatched on its
// own goroutine (at most maxInFlight per connection; reading waits
// beyond that), responses and notifications are written by one writer
// per connection. A connection that reads its notifications too slowly
// loses them, counted, rather than holding up the daemon.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Method is one method: it decodes params itself (DecodeParams) and
// returns a result that encodes to JSON, or an error. A *Error is sent
// as it is; any other error goes through Server.ErrorOf.
type Method func(ctx context.Context, params json.RawMessage) (any, error)

// Server dispatches requests to Methods. Set the fields before serving.
type Server struct {
	// Methods by name (required).
	Methods map[string]Method
	// ErrorOf turns a method's error into an error object. Nil means
	// CodeInternalError with the error's text.
	ErrorOf func(error) *Error
	// Dropped makes the notification that tells a connection how many
	// notifications it lost by reading too slowly. Nil means none.
	Dropped func(n int) (method string, params any)
	// Logger logs connections and failed writes. Nil means none.
	Logger *slog.Logger
	// WriteTimeout bounds one write to a connection that has write
	// deadlines (a socket); the connection is closed after it. Zero
	// means 30s.
	WriteTimeout time.Duration

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// maxInFlight bounds the requests of one connection being handled at
// once; notifyQueue and notifyBytes bound the notifications waiting to
// be written to one connection (one notification is always let through,
// however large).
const (
	maxInFlight = 32
	notifyQueue = 256
	notifyBytes = 16 << 20
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("daemon: server closed")

type conn struct {
	rw      io.ReadWriteCloser
	out     chan []byte // responses: never dropped
	notes   chan []byte // notifications: dropped when full
	mu      sync.Mutex
	dropped int
	queued  int // bytes in notes
	done    chan struct{}
	once    sync.Once
}

func (c *conn) close() {
	c.once.Do(func() { close(c.done); c.rw.Close() })
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve accepts connections from ln until Close; it returns
// ErrServerClosed then.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(ctx, c)
		}()
	}
}

// ServeConn serves one connection until it ends (end of input, a read
// error, Close) and every request read from it was answered. It closes
// rw.
func (s *Server) ServeConn(ctx context.Context, rw io.ReadWriteCloser) {
	c := &conn{rw: rw, out: make(chan []byte, maxInFlight), notes: make(chan []byte, notifyQueue), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		rw.Close()
		return
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	// Requests are cancelled when the connection ends (Close, a failed
	// write), not at the end of its input: a client may send its
	// requests, close its side and wait for the answers (nc -q, stdio).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			c.close()
		case <-c.done:
			cancel()
		}
	}()
	written := make(chan struct{})
	go func() {
		defer close(written)
		s.write(c)
	}()

	var handlers sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	r := bufio.NewReaderSize(rw, 64<<10)
	for {
		line, tooLong, err := readLine(r, MaxLine)
		if tooLong {
			s.respond(c, encodeError(nil, &Error{Code: CodeInvalidRequest, Message: "request line longer than the limit of " + itoa(MaxLine) + " bytes"}))
		} else if len(line) > 0 && !isBlank(line) {
			req, id, rerr := DecodeRequest(line)
			if rerr != nil {
				s.respond(c, encodeError(id, rerr))
			} else {
				select {
				case sem <- struct{}{}:
					handlers.Add(1)
				case <-c.done:
					req, err = nil, io.ErrClosedPipe
				}
			}
			if req != nil {
				go func() {
					defer handlers.Done()
					defer func() { <-sem }()
					s.handle(ctx, c, req)
				}()
			}
		}
		if err != nil {
			break
		}
	}
	handlers.Wait()
	close(c.out)
	<-written
	c.close()
}

// readLine reads one line of at most limit bytes (without its newline).
// A longer line is consumed up to its newline and reported as tooLong.
// err is set at the end of input (line may still hold a last line).
func readLine(r *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > limit+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if tooLong {
			line = nil
		}
		return line, tooLong, err
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// handle runs one request and queues its response.
func (s *Server) handle(ctx context.Context, c *conn, req *Request) {
	m, ok := s.Methods[req.Method]
	if !ok {
		if req.ID != nil {
			s.respond(c, encodeError(req.ID, &Error{Code: CodeMethodNotFound, Message: "method not found: " + req.Method}))
		}
		return
	}
	res, err := s.call(ctx, m, req.Params)
	if req.ID == nil {
		return // a notification: no response, even on error
	}
	if err != nil {
		s.respond(c, encodeError(req.ID, s.errorOf(err)))
		return
	}
	b, merr := encodeResult(req.ID, res)
	if merr != nil {
		b = encodeError(req.ID, &Error{Code: CodeInternalError, Message: "encoding the result: " + merr.Error()})
	}
	s.respond(c, b)
}

// call runs m, turning a panic into an internal error so that one bad
// request never ends the daemon.
func (s *Server) call(ctx context.Context, m Method, params json.RawMessage) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logger().Error("daemon: method panicked", "panic", p)
			res, err = nil, &Error{Code: CodeInternalError, Message: "internal error"}
		}
	}()
	return m(ctx, params)
}

func (s *Server) errorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if s.ErrorOf != nil {
		return s.ErrorOf(err)
	}
	return &Error{Code: CodeInternalError, Message: err.Error()}
}

func (s *Server) respond(c *conn, b []byte) {
	select {
	case c.out <- b:
	case <-c.done:
	}
}

// write is a connection's writer: responses first, then notifications.
func (s *Server) write(c *conn) {
	timeout := s.WriteTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dl, _ := c.rw.(interface{ SetWriteDeadline(time.Time) error })
	send := func(b []byte) bool {
		if dl != nil {
			dl.SetWriteDeadline(time.Now().Add(timeout))
		}
		if _, err := c.rw.Write(append(b, '\n')); err != nil {
			s.logger().Debug("daemon: writing to a client failed; closing it", "err", err)
			c.close()
			return false
		}
		return true
	}
	ok := true
	for {
		select {
		case b, more := <-c.out:
			if !more {
				return
			}
			if ok {
				ok = send(b)
			}
			continue
		default:
		}
		select {
		case b, more := <-c.out:
			if !more {
				return
			}
			if ok {
				ok = send(b)
			}
		case b := <-c.notes:
			if ok {
				ok = send(b)
			}
			c.mu.Lock()
			c.queued -= len(b)
			c.mu.Unlock()
			if ok {
				c.mu.Lock()
				n := c.dropped
				c.dropped = 0
				c.mu.Unlock()
				if n > 0 && s.Dropped != nil {
					method, params := s.Dropped(n)
					if nb, err := json.Marshal(notification{JSONRPC: "2.0", Method: method, Params: params}); err == nil {
						ok = send(nb)
					}
				}
			}
		}
	}
}

// Notify sends a notification to every connection. A connection whose
// queue is full loses it (Dropped tells it later).
func (s *Server) Notify(method string, params any) error {
	b, err := json.Marshal(notification{JSONRPC: "2.0", Method: method, Params: params})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		if c.queued > 0 && c.queued+len(b) > notifyBytes {
			c.dropped++
			c.mu.Unlock()
			continue
		}
		select {
		case c.notes <- b:
			c.queued += len(b)
		default:
			c.dropped++
		}
		c.mu.Unlock()
	}
	return nil
}

// Close ends every connection and makes Serve return. Requests being
// handled get their context cancelled.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Wait waits for the connections Serve accepted to finish.
func (s *Server) Wait() { s.wg.Wait() }
