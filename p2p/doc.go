// Package p2p is node3's network layer: a libp2p host with a persisted
// identity, the Kademlia DHT, GossipSub topics with validators and peer
// scoring, and request/response stream protocols. It knows messages, not
// business rules: it checks that a message is well formed, fresh, not a
// replay and signed by someone entitled to send it, and hands it to the
// node package, which owns the ledger and decides what the message means.
//
// # Node
//
// New(ctx, Config) starts a Node and Close stops it, waiting for every
// goroutine it started. Several Nodes can run in one process: there is no
// package-level mutable state, and logger, clock and Prometheus registerer
// are injected. A Node has:
//
//   - an Ed25519 identity in DataDir/identity.key (mode 0600, libp2p
//     protobuf encoding; created on first start, reused after; a file
//     readable by others or that does not parse is an error, never
//     replaced);
//   - TCP and QUIC transports, a connection manager (ConnLow/ConnHigh,
//     bootstrap peers protected), an optional connection gater
//     (Config.Gater: the harness partitions networks with it) and a
//     resource manager with libp2p's
//     auto-scaled limits plus per-protocol stream limits for the protocols
//     below;
//   - bootstrap peers from bootstrap.txt (ParseBootstrapFile: one multiaddr
//     with /p2p/<id> per line, '#' comments; a bad line is an error naming
//     its line) and Config.Bootstrap, dialled at start and redialled with
//     backoff whenever a connection to them is lost;
//   - a DHT in server mode under the protocol prefix /node3/<network>, so
//     networks never mix; Advertise/AdvertiseOnce and FindPeers publish and
//     look up rendezvous strings node3/<network>/<role> (RoleCoordinators,
//     RoleProviders; every node also advertises RoleNodes, which a
//     background loop uses to find peers while it has fewer than ConnLow).
//
// # Topics
//
// Every node subscribes to, and so relays, two topics (one started with
// Config.NoBoard stays off the jobs topic):
//
//	/node3/<network>/jobs/1       PostingBatch or JobPosting: new jobs and status updates
//	/node3/<network>/providers/1  ProviderAdvert: a provider's GPUs and terms
//
// GossipSub runs with StrictSign (every message carries its author's peer
// ID, a sequence number and a signature checked before our validators run),
// flood publishing (a posting reaches every connected subscriber at once,
// even before the mesh forms), queues sized for bursts, and peer scoring:
// each rejected message costs its forwarder 100 points squared by count
// (jobs topic; 50 on providers), decaying over an hour; below -500 a peer
// gets no gossip, below -1000 no publishes, below -2500 it is ignored.
// Loopback (and Config.ColocationWhitelist) is exempt from the IP
// colocation penalty, so a local network of nodes on 127.0.0.1 is not
// punished. PeerScore exposes the scores.
//
// # Message encoding
//
// Gossip and stream messages are JSON objects with a version field "v"
// (currently 1); JSON was chosen over a compact binary encoding because
// the messages are small, rare and read by people debugging a network,
// and because the root package's types already define their JSON form.
// Decoders accept exactly one object (no trailing data), tolerate unknown
// fields (a version may grow), bound the input size (128 KiB for postings,
// 64 KiB for adverts, MaxFrameSize on streams) and check every field's
// shape and range. Peer IDs are their usual base58 strings, times RFC 3339,
// amounts integer lamports.
//
// A JobPosting carries kind (posted | status), job id, the node3.Job
// (required when posted), status, the assigned provider, the coordinator's
// peer ID, a per-job sequence number, issued-at and expires-at. A
// ProviderAdvert carries the provider's peer ID, GPUs, free slots, price
// floor in lamports, Solana wallet, software version, a sequence number,
// issued-at and a TTL of at most an hour. PublishJob and PublishAdvert fill
// the version, author, time and a rising sequence number when left empty.
// A PostingBatch (PublishJobs) carries up to MaxBatchPostings postings of
// its coordinator under one signature; handlers get them one by one, each
// validated as if it came alone, except that one posting no honest
// coordinator signs rejects the whole batch.
//
// # Trust model and validation
//
// The GossipSub signature binds a message to its author (msg.GetFrom, not
// the forwarder). On top of that the validators require:
//
//   - a posting's coordinator field to equal its author, and the author to
//     be a trusted coordinator (Config.TrustedCoordinators, TrustFunc,
//     SetTrustedCoordinators at run time; a node always trusts itself);
//   - an advert's peer_id to equal its author: a provider speaks only for
//     itself;
//   - issued-at no more than MaxClockSkew in the future, and the message
//     not past its expiry;
//   - a sequence number above the last one accepted for the same author
//     and job (postings) or author (adverts). This catches replays and
//     stale updates in bounded memory (ReplayCacheSize keys per topic,
//     each kept until its message expires).
//
// What no honest forwarder would pass on is rejected, which drops the
// message and lowers the forwarder's score: malformed or oversized data,
// forged identities, untrusted coordinators, far-future times and messages
// that expired longer than MaxClockSkew ago. What depends on this node's
// own state is ignored — dropped without penalty: replays and stale
// sequence numbers, messages that expired moments ago, and newer message
// versions. Either way the message never reaches a handler. Note that
// nodes with different trusted sets penalise each other for relaying
// postings the other does not trust; keep a network's trust configuration
// consistent.
//
// Accepted messages from other peers reach OnJobPosting and OnAdvert
// handlers (or Config.OnJobPosting/OnAdvert, registered before the node
// connects), one at a time on a goroutine per topic owned by the Node.
//
// # Streams
//
// Request and Handle implement request/response over libp2p streams: one
// frame each way, framed as a kind byte (0 data, 1 error), a uvarint
// length and the payload, at most MaxFrameSize (1 MiB by default) and
// within StreamTimeout or the context's deadline. A handler's error goes
// back as an error frame with its node3.Code and caller-safe message and
// comes out of Request as a *RemoteError, which node3.ErrorCode
// understands. The typed protocols are
//
//	/node3/<network>/claim/1   ClaimRequest → ClaimResponse (grant + lease, or deny + reason)
//	/node3/<network>/report/1  Report (heartbeat | completed | failed, retryable) → ReportAck (lease, cancel, status)
//	/node3/<network>/sync/1    SyncRequest (after, limit) → SyncResponse (open postings, more)
//
// (a final report's ack carries the job's resulting status: completed,
// failed, or available when a retryable failure requeued it) with
// RequestClaim/HandleClaim, SendReport/HandleReport and
// RequestSync/HandleSync; HandleSync cuts a board to the frame size and
// sets More. The peer on a stream is authenticated by the transport
// security, so a handler's from argument is who the claimant really is.
//
// # Work streams
//
// Assignment is decided once, at the coordinator. A provider keeps one
// long-lived stream to each coordinator it trusts,
//
//	/node3/<network>/work/1    provider ⇄ coordinator, many frames each way
//
// opened with OpenWork (refused, CodeForbidden, for a coordinator outside
// the trusted set; SetTrustedCoordinators closes streams to coordinators
// it drops) and served by HandleWork. Frames are the data frames
// above; each holds one JSON WorkMessage, an envelope with the version,
// a type tag and the one body that type names:
//
//	{"v":1,"type":"capacity","capacity":{"seq":…,"free_slots":1,"total_slots":2,"gpus":[{"index":0,"uuid":"GPU-…","vendor":"NVIDIA","model":"H200","memory_bytes":…,"busy":false}],"price_floor_lamports":5000,"wallet_address":"…","software_version":"…"}}
//	{"v":1,"type":"ack","ack":{"job_id":"…","attempt":1}}
//	{"v":1,"type":"decline","decline":{"job_id":"…","attempt":1,"reason":"…"}}
//	{"v":1,"type":"grant","grant":{"job":{…the full node3.Job…},"attempt":1,"gpus":[{"index":0,"uuid":"GPU-…"}],"lease_expires_at":"…","ack_by":"…"}}
//	{"v":1,"type":"revoke","revoke":{"job_id":"…","attempt":1,"reason":"…"}}
//	{"v":1,"type":"ping"}
//
// Capacity, ack and decline go from provider to coordinator; grant and
// revoke from coordinator to provider; ping either way. A capacity report's
// seq rises with every report on a stream. Size limits: 64 KiB for
// capacity, 512 KiB for a grant (a full job spec, command and env
// included, checked with JobSpec.Normalize on a copy), 4 KiB for the rest;
// a frame's declared length is refused before it is read (64 KiB from a
// provider, 512 KiB from a coordinator). The version is the protocol ID's:
// a frame with another "v" is an error, not a message to ignore.
//
// A WorkConn carries the authenticated remote peer; Messages delivers what
// the peer sends, in order, pings excluded; Send checks a message and
// queues it without blocking. Each stream has a reader and a writer
// goroutine owned by the Node. A side that wrote nothing for WorkKeepAlive
// sends a ping; a stream on which nothing arrived for WorkIdleTimeout is
// closed (ErrWorkIdle); a write that takes longer than WorkWriteTimeout,
// or a send queue (WorkSendQueue frames) that is full, drops the peer
// (ErrWorkSlowPeer) rather than holding the node up. A peer has at most
// one work stream to a node in each direction: a newer one replaces the
// older (ErrWorkReplaced), so a provider that reconnects after a network
// blip does not wait for its dead stream to time out. Close, or Node
// Close, resets the stream, which the peer sees at once (ErrWorkBroken).
// KeepWork runs a provider's loop for one coordinator: open, hand the
// stream to a function, reopen with backoff when it ends.
//
// A frame that is malformed, oversized, of another version, of a type the
// sender's side may not send, or a capacity report whose seq does not
// rise closes the stream (ErrWorkProtocol) and never reaches Messages. It
// is counted by reason and costs the peer 100 penalty points, halving
// every 15 minutes (WorkPenalty); the penalty is subtracted from the
// peer's GossipSub score as its application-specific part, so a peer that
// sends garbage on work streams loses its standing on the topics too.
// Idle and slow peers are dropped without penalty.
//
// p2p does not schedule: which provider gets a job, the ledger's accept,
// requeueing on a decline or a missing ack all belong to the node package.
//
// # Metrics
//
// Registered with Config.Registerer (a private registry when nil):
// node3_p2p_peers, node3_p2p_messages_{received,rejected,ignored,
// published}_total by topic (and reason), node3_p2p_stream_requests_total,
// node3_p2p_work_streams, node3_p2p_work_messages_total by type and
// direction, node3_p2p_work_dropped_total and node3_p2p_work_closed_total
// by reason, node3_p2p_work_send_overflows_total, plus libp2p's own
// collectors. Nodes sharing a registerer add up into the
// same series.
package p2p
