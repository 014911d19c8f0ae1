// Package node3 holds the shared vocabulary of a node3 network: jobs and
// their states, requirements, GPUs, agents, payouts and amounts of SOL in
// lamports, and the error codes every layer speaks. It does no I/O and
// depends on nothing but the standard library.
//
// The packages below it wrap one dependency each: ledger (Badger), exec
// (process execution), gpu (detection), httpapi (HTTP). Package node wires
// them into a running node; cmd/node3 is the command line.
package node3
