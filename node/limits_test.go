package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/node"
)

// TestNodeLimitsAndHosts: the node hands its Limits to the marketplace
// API and its NodeAPIHosts to the node API, which answers loopback names
// and the configured one, and refuses any other Host even from loopback.
func TestNodeLimitsAndHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := node.New(ctx, node.Config{
		DataDir:           t.TempDir(),
		Coordinator:       true,
		MarketplaceListen: "127.0.0.1:0",
		NodeListen:        "127.0.0.1:0",
		Limits:            httpapi.Limits{Register: httpapi.Rate{Limit: 1.0 / 3600, Burst: 1}},
		NodeAPIHosts:      []string{"node.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	c, err := httpapi.NewClient(httpapi.ClientConfig{BaseURL: n.MarketplaceURL()})
	if err != nil {
		t.Fatal(err)
	}
	req := httpapi.RegisterRequest{WalletAddress: "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30}
	if _, err := c.Register(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, req); node3.ErrorCode(err) != node3.CodeRateLimited {
		t.Fatalf("second registration within the hour: %v, want rate_limited", err)
	}

	port := n.NodeURL()[strings.LastIndex(n.NodeURL(), ":")+1:]
	for host, want := range map[string]int{
		"localhost:" + port:         http.StatusOK,
		"127.0.0.1:" + port:         http.StatusOK,
		"[::1]:" + port:             http.StatusOK,
		"node.example:" + port:      http.StatusOK,
		"evil.example":              http.StatusMisdirectedRequest,
		"evil.example:" + port:      http.StatusMisdirectedRequest,
		"localhost.evil.example:80": http.StatusMisdirectedRequest,
	} {
		r, err := http.NewRequestWithContext(ctx, "GET", n.NodeURL()+"/api/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = host
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d: %s", host, resp.StatusCode, want, body)
			continue
		}
		if want != http.StatusOK {
			var eb struct{ Error, Code string }
			if err := json.Unmarshal(body, &eb); err != nil || eb.Code != "forbidden" || !strings.Contains(eb.Error, "--node-api-host") {
				t.Errorf("Host %s: refusal %s does not say how to allow the name (%v)", host, body, err)
			}
		}
	}
	// The marketplace API is public: any Host.
	r, _ := http.NewRequestWithContext(ctx, "GET", n.MarketplaceURL()+"/health", nil)
	r.Host = "evil.example"
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("marketplace /health with Host evil.example: %d", resp.StatusCode)
	}
}
