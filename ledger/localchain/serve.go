package localchain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultAddr is where ListenAndServe listens when given "": the port of
// solana-test-validator's RPC, on loopback only.
const DefaultAddr = "127.0.0.1:8899"

// ListenAndServe listens on addr (DefaultAddr if empty) and serves the
// JSON-RPC endpoint until ctx is done or the chain is closed.
func (c *Chain) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("localchain: listen on %s: %w", addr, err)
	}
	return c.Serve(ctx, ln)
}

// Serve serves the JSON-RPC endpoint on ln until ctx is done or the chain
// is closed, then shuts the server down (waiting up to two seconds for
// requests in flight) and returns nil. It closes ln.
func (c *Chain) Serve(ctx context.Context, ln net.Listener) error {
	// Requests derive from reqCtx, cancelled as shutdown begins, so that
	// requests held by a stall fault end at once instead of holding up
	// Shutdown.
	reqCtx, stopRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRequests()
	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("localchain: serve: %w", err)
	case <-ctx.Done():
	case <-c.done:
	}
	stopRequests()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // requests still running: cut them off
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("localchain: serve: %w", err)
	}
	return nil
}
