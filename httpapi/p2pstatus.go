package httpapi

// P2PStatus is the libp2p part of GET /api/status.
type P2PStatus struct {
	PeerID              string        `json:"peer_id"`
	Network             string        `json:"network"`
	ListenAddrs         []string      `json:"listen_addrs"` // with /p2p/<peer id>: usable as bootstrap addresses
	Peers               int           `json:"peers"`        // connected peers
	Topics              []TopicStatus `json:"topics"`
	TrustedCoordinators []string      `json:"trusted_coordinators"`
	ProvidersKnown      int           `json:"providers_known"` // providers in the advert table
	// Transport is how this node's provider takes jobs: "libp2p" (pushed
	// postings and streams), "rest" (polling its marketplace) or "none".
	Transport       string `json:"transport"`
	OpenJobs        int    `json:"open_jobs"`        // open jobs on a libp2p provider's board
	PostingsDropped uint64 `json:"postings_dropped"` // coordinator: job changes not published
}

// TopicStatus is one gossip topic and how many peers are known on it.
type TopicStatus struct {
	Name  string `json:"name"`
	Peers int    `json:"peers"`
}
