package harness

import (
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// TestFlowUnderDefaultLimits: two providers polling, accepting, beating
// and reporting through the REST API, and an admin submitting, all from
// 127.0.0.1, stay within the default limits: every job completes and no
// request is refused.
func TestFlowUnderDefaultLimits(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, Limits: &httpapi.Limits{}})
	ctx := timeout(t, 60*time.Second)
	var ids []string
	for range 20 {
		j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		j, err := nw.WaitJob(ctx, id, node3.StatusCompleted, node3.StatusFailed)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != node3.StatusCompleted || j.Attempt != 1 {
			t.Fatalf("job %s ended %s after %d attempts: %s", id, j.Status, j.Attempt, j.Error)
		}
	}
	resp, err := http.Get(nw.MarketplaceURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines := regexp.MustCompile(`(?m)^node3_http_rate_limited_total\{.*\} (\S+)$`).FindAllSubmatch(body, -1)
	if len(lines) != 5 {
		t.Fatalf("%d rate-limit counters in /metrics, want one per class (5)", len(lines))
	}
	for _, l := range lines {
		if string(l[1]) != "0" {
			t.Errorf("refused under the default limits: %s", l[0])
		}
	}
}
