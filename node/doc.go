// Package node builds a running node3 node from a Config: it opens the
// ledger, loads the wallet, detects GPUs, starts the coordinator role
// (node/coordinator: the board, leases, sweeper, and the marketplace API
// over it) when asked, the provider role unless
// told not to, and the node's own API; and it stops them in order.
//
// With Config.P2P the node is also on the libp2p network (p2p.go). A
// coordinator publishes every new or requeued job and every change to
// accepted, completed, failed, cancelled or expired, signed, from the
// ledger's job-change feed (node/coordinator, gossip.go), and serves claims,
// heartbeats, reports and sync over streams through the same Coordinator
// methods, and so the same ledger transitions, as the REST API. A provider
// that trusts a coordinator keeps a board of its open postings, claims the
// ones that fit its free capacity over a stream and reports over streams
// (node/provider, gossip.go); the rest of the provider — capacity, runs,
// heartbeats, the durable outbox — is shared with the REST path through
// the Transport interface (node/provider, transport.go). A provider over libp2p is known
// to its coordinator by its authenticated peer ID, which is its agent id.
//
// node is the composition root: it depends on every other package and none
// depends on it (except cmd/node3 and harness). It wires; the rules it
// wires live in ledger (the books and the job state machine), exec (how a
// job runs) and httpapi (what the API accepts).
package node
