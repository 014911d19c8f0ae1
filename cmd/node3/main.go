// Command node3 runs a node of the node3 GPU network, starts a whole local
// network (up), checks one end to end (e2e), and administers a marketplace
// (admin). Run `node3 --help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
