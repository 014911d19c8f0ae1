// Package node builds a running node3 node from a Config: it opens the
// ledger, loads the wallet, detects GPUs, starts the coordinator role (the
// marketplace API and its sweeper) when asked, the provider role unless
// told not to, and the node's own API; and it stops them in order.
//
// node is the composition root: it depends on every other package and none
// depends on it (except cmd/node3 and harness). It wires; the rules it
// wires live in ledger (the books and the job state machine), exec (how a
// job runs) and httpapi (what the API accepts).
package node
