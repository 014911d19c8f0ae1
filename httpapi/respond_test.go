package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/node3/node3"
)

// TestDecodeExactKeys: field names must match their JSON names exactly and
// appear once; the keys of maps and of raw values are free.
func TestDecodeExactKeys(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		into func() any
		ok   bool
	}{
		{"exact names", `{"reason":"x","retryable":true,"execution_time":1,"metrics":{"A":1,"a":2}}`, func() any { return &FailRequest{} }, true},
		{"embedded field in another case", `{"reason":"x","Execution_Time":1}`, func() any { return &FailRequest{} }, false},
		{"field in another case", `{"Reason":"x"}`, func() any { return &FailRequest{} }, false},
		{"field twice", `{"reason":"x","reason":"y"}`, func() any { return &FailRequest{} }, false},
		{"field twice in another case", `{"reason":"x","REASON":"y"}`, func() any { return &FailRequest{} }, false},
		{"map keys are free", `{"job_type":"noop","env":{"Path":"a","PATH":"b"},"command":["a"]}`, func() any { return &CreateJobRequest{} }, true},
		{"raw reward is free", `{"job_type":"noop","reward":{"Sol":1,"sol":[{"X":1}]}}`, func() any { return &CreateJobRequest{} }, true},
		{"pointer field", `{"job_type":"noop","reward_lamports":5}`, func() any { return &CreateJobRequest{} }, true},
		{"nested struct in another case", `{"wallet_address":"w","gpus":[{"model":"x"},{"Model":"y"}]}`, func() any { return &RegisterRequest{} }, false},
		{"nested struct twice", `{"wallet_address":"w","gpus":[{"model":"x","model":"y"}]}`, func() any { return &RegisterRequest{} }, false},
		{"empty object", `{}`, func() any { return &struct{}{} }, true},
		{"null", ` null`, func() any { return &FailRequest{} }, false},
		{"empty object, a key", `{"a":1}`, func() any { return &struct{}{} }, false},
	} {
		req := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
		err := decode(httptest.NewRecorder(), req, maxBody, false, c.into())
		if (err == nil) != c.ok {
			t.Errorf("%s: %s: err %v, want ok=%v", c.name, c.body, err, c.ok)
		}
		if err != nil && node3.ErrorCode(err) != node3.CodeInvalid {
			t.Errorf("%s: code %q", c.name, node3.ErrorCode(err))
		}
	}
}
