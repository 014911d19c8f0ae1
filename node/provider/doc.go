// Package provider is the provider role: its capacity (CPU slots and GPUs),
// the jobs it runs through an executor, their heartbeats, and the durable
// outbox that delivers every result to the coordinator, whichever way the
// coordinator is reached — the REST API (transport.go: register, long-poll,
// accept, report) or libp2p (gossip.go: the board of a trusted
// coordinator's postings, claims and reports over streams). Both sit behind
// the Transport interface; the rest of the provider is shared.
package provider
