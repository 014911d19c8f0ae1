package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// badCase is one request the API must refuse (or, for the few sanity rows,
// take) with an exact status.
type badCase struct {
	name   string
	method string
	path   string // {avail}, {big}, {held}, {done} stand for the fixture jobs
	auth   string // "": none; A, B: agent keys as Bearer; A-x: A's key as X-API-Key; admin, admin-x (X-API-Key), admin-h (X-Admin-Key); wrong, wrong-h
	ct     string // Content-Type; "" means application/json when there is a body; "none" sends none
	body   string
	status int
	// docRejects: the document's request schema must refuse the body too,
	// so that what the decoder refuses is written down.
	docRejects bool
	idemKey    string // an Idempotency-Key header, sent as is
}

func rep(s string, n int) string { return strings.Repeat(s, n) }

// jsonStr quotes s as a JSON string.
func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func metricsBody(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"m%d":%d`, i, i)
	}
	return `{"metrics":{` + strings.Join(parts, ",") + `}}`
}

func gpusBody(n int) string {
	return `{"wallet_address":"` + walletA + `","gpus":[` + strings.TrimSuffix(rep(`{"model":"x"},`, n), ",") + `]}`
}

const (
	// A valid registration and job, for rows that break only one thing.
	okReg = `{"wallet_address":"` + walletA + `","gpu_model":"RTX 4090","gpu_vendor":"NVIDIA","gpu_memory":25757220864}`
	okJob = `{"job_type":"test","reward":0.001}`
)

func badCases() []badCase {
	W := walletA
	reg := func(name, body string, status int, doc bool) badCase {
		return badCase{name: "register/" + name, method: "POST", path: "/api/agents/register", body: body, status: status, docRejects: doc}
	}
	create := func(name, body string, status int, doc bool) badCase {
		return badCase{name: "create/" + name, method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: body, status: status, docRejects: doc}
	}
	avail := func(name, body string, status int, doc bool) badCase {
		return badCase{name: "available/" + name, method: "POST", path: "/api/jobs/available", auth: "A", body: body, status: status, docRejects: doc}
	}
	jobCall := func(verb, name, job, auth, body string, status int, doc bool) badCase {
		return badCase{name: verb + "/" + name, method: "POST", path: "/api/jobs/" + job + "/" + verb, auth: auth, body: body, status: status, docRejects: doc}
	}
	get := func(name, path, auth string, status int) badCase {
		return badCase{name: name, method: "GET", path: path, auth: auth, status: status}
	}
	return []badCase{
		// POST /api/agents/register
		reg("malformed JSON", `{"wallet_address":`, 400, true),
		reg("not JSON", `wallet_address=abc`, 400, true),
		reg("single quotes", `{'wallet_address':'x'}`, 400, true),
		reg("unknown field", `{"wallet_address":"`+W+`","gpu_modle":"x"}`, 400, true),
		reg("field name in another case", `{"wAllet_Address":"`+W+`"}`, 400, true),
		reg("field twice", `{"wallet_address":"abc","wallet_address":"`+W+`"}`, 400, false),
		reg("field twice, other case", `{"wallet_address":"`+W+`","WALLET_ADDRESS":"abc"}`, 400, true),
		reg("nested field in another case", `{"wallet_address":"`+W+`","gpus":[{"Model":"x"}]}`, 400, true),
		reg("gpu_memory as string", `{"wallet_address":"`+W+`","gpu_memory":"8GB"}`, 400, true),
		reg("gpu_memory negative", `{"wallet_address":"`+W+`","gpu_memory":-1}`, 400, true),
		reg("gpu_memory fractional", `{"wallet_address":"`+W+`","gpu_memory":1.5}`, 400, true),
		reg("gpu_memory overflows", `{"wallet_address":"`+W+`","gpu_memory":18446744073709551616}`, 400, false),
		reg("wallet_address as number", `{"wallet_address":12345}`, 400, true),
		reg("wallet_address as null", `{"wallet_address":null}`, 400, true),
		reg("wallet_address missing", `{"gpu_model":"RTX 4090"}`, 400, true),
		reg("wallet_address empty", `{"wallet_address":""}`, 400, true),
		reg("wallet_address too short", `{"wallet_address":"abc"}`, 400, true),
		reg("wallet_address too long", `{"wallet_address":"`+W+`1"}`, 400, true),
		reg("wallet_address not base58", `{"wallet_address":"0OIl`+W[4:]+`"}`, 400, true),
		reg("wallet_address with a slash", `{"wallet_address":"`+W[:40]+`/../"}`, 400, true),
		reg("gpus as object", `{"wallet_address":"`+W+`","gpus":{}}`, 400, true),
		reg("gpu with unknown field", `{"wallet_address":"`+W+`","gpus":[{"vram":1}]}`, 400, true),
		reg("gpu memory as string", `{"wallet_address":"`+W+`","gpus":[{"memory_bytes":"24GB"}]}`, 400, true),
		reg("65 gpus", gpusBody(65), 400, true),
		reg("gpu_model too long", `{"wallet_address":"`+W+`","gpu_model":"`+rep("x", 300)+`"}`, 400, true),
		reg("empty body", ``, 400, true),
		reg("whitespace body", "  \n ", 400, true),
		reg("null body", `null`, 400, true),
		reg("array body", `[]`, 400, true),
		reg("array of objects", `[`+okReg+`]`, 400, true),
		reg("string body", `"hello"`, 400, true),
		reg("number body", `42`, 400, true),
		reg("trailing object", okReg+`{}`, 400, true),
		reg("trailing garbage", okReg+`x`, 400, true),
		reg("deep nesting", rep("[", 20000)+rep("]", 20000), 400, true),
		reg("over 64 KiB", `{"wallet_address":"`+W+`","version":"`+rep("x", 70<<10)+`"}`, 413, true),
		{name: "register/text/plain", method: "POST", path: "/api/agents/register", ct: "text/plain", body: okReg, status: 400},
		{name: "register/form", method: "POST", path: "/api/agents/register", ct: "application/x-www-form-urlencoded", body: "wallet_address=" + W, status: 400},
		{name: "register/multipart", method: "POST", path: "/api/agents/register", ct: "multipart/form-data; boundary=x", body: okReg, status: 400},

		// POST /api/jobs/available
		{name: "available/no key", method: "POST", path: "/api/jobs/available", body: `{}`, status: 401},
		{name: "available/wrong key", method: "POST", path: "/api/jobs/available", auth: "wrong", body: `{}`, status: 401},
		{name: "available/wrong X-API-Key", method: "POST", path: "/api/jobs/available", auth: "wrong-h", body: `{}`, status: 401},
		{name: "available/admin key", method: "POST", path: "/api/jobs/available", auth: "admin", body: `{}`, status: 401},
		avail("malformed", `{"limit":`, 400, true),
		avail("unknown field", `{"limt":5}`, 400, true),
		avail("limit as string", `{"limit":"5"}`, 400, true),
		avail("limit fractional", `{"limit":1.5}`, 400, true),
		avail("limit negative", `{"limit":-1}`, 400, true),
		avail("limit 101", `{"limit":101}`, 400, true),
		avail("limit huge", `{"limit":99999999999999999999}`, 400, true),
		avail("wait_seconds negative", `{"wait_seconds":-1}`, 400, true),
		avail("wait_seconds 31", `{"wait_seconds":31}`, 400, true),
		avail("wait_seconds 1e300", `{"wait_seconds":1e300}`, 400, true),
		avail("wait_seconds 1e400", `{"wait_seconds":1e400}`, 400, true),
		avail("wait_seconds as string", `{"wait_seconds":"5"}`, 400, true),
		avail("wait_seconds as bool", `{"wait_seconds":true}`, 400, true),
		avail("free_slots negative", `{"free_slots":-1}`, 400, true),
		avail("free_slots over 10000", `{"free_slots":10001}`, 400, true),
		avail("free_slots as string", `{"free_slots":"1"}`, 400, true),
		avail("free_gpus as string", `{"free_gpus":"0,1"}`, 400, true),
		avail("free_gpus fractional", `{"free_gpus":[1.5]}`, 400, true),
		avail("free_gpus 65 entries", `{"free_gpus":[`+strings.TrimSuffix(rep("0,", 65), ",")+`]}`, 400, true),
		avail("ok: nothing free", `{"free_slots":0,"free_gpus":[]}`, 200, false),
		avail("array body", `[]`, 400, true),
		avail("null body", ` null `, 400, true),
		avail("trailing data", `{}{}`, 400, true),
		avail("over 64 KiB", `{"limit":1`+rep(" ", 70<<10)+`}`, 413, false),
		{name: "available/text/plain", method: "POST", path: "/api/jobs/available", auth: "A", ct: "text/plain", body: `{}`, status: 400},
		{name: "available/application/jsonp", method: "POST", path: "/api/jobs/available", auth: "A", ct: "application/jsonp", body: `{}`, status: 400},
		{name: "available/ok: Application/JSON; charset=UTF-8", method: "POST", path: "/api/jobs/available", auth: "A", ct: "Application/JSON; charset=UTF-8", body: `{}`, status: 200},
		avail("ok: no body", ``, 200, false),
		avail("ok: limits", `{"limit":100,"wait_seconds":0}`, 200, false),
		{name: "available/ok: key as X-API-Key", method: "POST", path: "/api/jobs/available", auth: "A-x", status: 200},

		// GET /api/jobs/{id}
		get("job/no key", "/api/jobs/{held}", "", 401),
		get("job/wrong key", "/api/jobs/{held}", "wrong", 401),
		get("job/another agent's", "/api/jobs/{held}", "B", 403),
		get("job/unknown (admin)", "/api/jobs/no-such-job", "admin", 404),
		get("job/unknown (agent)", "/api/jobs/no-such-job", "A", 404),
		get("job/very long id", "/api/jobs/"+rep("x", 70000), "admin", 404),
		get("job/escaped slash in id", "/api/jobs/a%2Fb", "admin", 404),
		get("job/GET available is a job lookup", "/api/jobs/available", "admin", 404),
		get("job/ok: holder", "/api/jobs/{held}", "A", 200),
		get("job/ok: admin via X-Admin-Key", "/api/jobs/{held}", "admin-h", 200),

		// POST /api/jobs/{id}/accept
		jobCall("accept", "no key", "{avail}", "", ``, 401, false),
		jobCall("accept", "wrong key", "{avail}", "wrong", ``, 401, false),
		jobCall("accept", "admin key", "{avail}", "admin", ``, 401, false),
		jobCall("accept", "unknown job", "no-such-job", "A", ``, 404, false),
		jobCall("accept", "completed job", "{done}", "A", ``, 409, false),
		jobCall("accept", "completed job, other agent", "{done}", "B", ``, 409, false),
		jobCall("accept", "held by another agent", "{held}", "B", `{}`, 409, false),
		jobCall("accept", "GPUs do not meet the job", "{big}", "B", ``, 403, false),
		jobCall("accept", "unknown field", "{avail}", "A", `{"force":true}`, 400, true),
		jobCall("accept", "array body", "{avail}", "A", `[]`, 400, true),
		jobCall("accept", "null body", "{avail}", "A", `null`, 400, true),
		jobCall("accept", "malformed", "{avail}", "A", `{`, 400, true),
		jobCall("accept", "trailing data", "{avail}", "A", `{}{}`, 400, true),
		jobCall("accept", "over 64 KiB", "{avail}", "A", `{"x":"`+rep("x", 70<<10)+`"}`, 413, true),
		{name: "accept/text/plain", method: "POST", path: "/api/jobs/{avail}/accept", auth: "A", ct: "text/plain", body: `{}`, status: 400},

		// POST /api/jobs/{id}/heartbeat
		jobCall("heartbeat", "no key", "{held}", "", ``, 401, false),
		jobCall("heartbeat", "unknown job", "no-such-job", "A", ``, 404, false),
		jobCall("heartbeat", "available job", "{avail}", "A", ``, 409, false),
		jobCall("heartbeat", "completed job", "{done}", "A", ``, 409, false),
		jobCall("heartbeat", "held by another agent", "{held}", "B", ``, 409, false),
		jobCall("heartbeat", "unknown field", "{held}", "A", `{"progress":0.5}`, 400, true),
		jobCall("heartbeat", "string body", "{held}", "A", `"alive"`, 400, true),
		jobCall("heartbeat", "over 64 KiB", "{held}", "A", `{"x":"`+rep("x", 70<<10)+`"}`, 413, true),

		// POST /api/jobs/{id}/complete
		jobCall("complete", "no key", "{held}", "", `{}`, 401, false),
		jobCall("complete", "wrong key", "{held}", "wrong", `{}`, 401, false),
		jobCall("complete", "unknown job", "no-such-job", "A", `{"execution_time":1}`, 404, false),
		jobCall("complete", "available job", "{avail}", "A", `{"execution_time":1}`, 409, false),
		jobCall("complete", "held by another agent", "{held}", "B", `{"execution_time":1}`, 409, false),
		jobCall("complete", "execution_time negative", "{held}", "A", `{"execution_time":-1}`, 400, true),
		jobCall("complete", "execution_time as string", "{held}", "A", `{"execution_time":"fast"}`, 400, true),
		jobCall("complete", "execution_time absurd", "{held}", "A", `{"execution_time":1e9}`, 400, true),
		jobCall("complete", "setup_time negative", "{held}", "A", `{"setup_time":-0.5}`, 400, true),
		jobCall("complete", "exit_code fractional", "{held}", "A", `{"exit_code":1.5}`, 400, true),
		jobCall("complete", "exit_code overflows", "{held}", "A", `{"exit_code":99999999999999999999}`, 400, false),
		jobCall("complete", "output_sha256 not hex", "{held}", "A", `{"output_sha256":"xyz"}`, 400, true),
		jobCall("complete", "metrics not numbers", "{held}", "A", `{"metrics":{"a":"b"}}`, 400, true),
		jobCall("complete", "65 metrics", "{held}", "A", metricsBody(65), 400, true),
		jobCall("complete", "metric name too long", "{held}", "A", `{"metrics":{"`+rep("m", 200)+`":1}}`, 400, false),
		jobCall("complete", "output over 64 KiB", "{held}", "A", `{"output":"`+rep("x", 70<<10)+`"}`, 400, true),
		jobCall("complete", "unknown field", "{held}", "A", `{"exitcode":0}`, 400, true),
		jobCall("complete", "field in another case", "{held}", "A", `{"Exit_Code":0}`, 400, true),
		jobCall("complete", "metric names are free (decoded, then refused by state)", "{avail}", "A", `{"metrics":{"A":1,"a":2,"Exit_Code":3}}`, 409, false),
		jobCall("complete", "result nested", "{held}", "A", `{"result":{"exit_code":0}}`, 400, true),
		jobCall("complete", "malformed", "{held}", "A", `{"exit_code":0`, 400, true),
		jobCall("complete", "null body", "{held}", "A", `null`, 400, true),
		jobCall("complete", "array body", "{held}", "A", `[{"exit_code":0}]`, 400, true),
		jobCall("complete", "over 256 KiB", "{held}", "A", `{"output":"`+rep("x", 260<<10)+`"}`, 413, true),
		{name: "complete/text/plain", method: "POST", path: "/api/jobs/{held}/complete", auth: "A", ct: "text/plain", body: `{}`, status: 400},

		// POST /api/jobs/{id}/fail
		jobCall("fail", "no key", "{held}", "", `{}`, 401, false),
		jobCall("fail", "unknown job", "no-such-job", "A", `{"reason":"x"}`, 404, false),
		jobCall("fail", "available job", "{avail}", "A", `{"reason":"x"}`, 409, false),
		jobCall("fail", "completed job", "{done}", "A", `{"reason":"x"}`, 409, false),
		jobCall("fail", "held by another agent", "{held}", "B", `{"reason":"x"}`, 409, false),
		jobCall("fail", "reason over 4096 bytes", "{held}", "A", `{"reason":"`+rep("r", 5000)+`"}`, 400, true),
		jobCall("fail", "reason as number", "{held}", "A", `{"reason":42}`, 400, true),
		jobCall("fail", "retryable as string", "{held}", "A", `{"reason":"x","retryable":"yes"}`, 400, true),
		jobCall("fail", "execution_time negative", "{held}", "A", `{"execution_time":-1}`, 400, true),
		jobCall("fail", "output over 64 KiB", "{held}", "A", `{"output":"`+rep("x", 70<<10)+`"}`, 400, true),
		jobCall("fail", "unknown field", "{held}", "A", `{"reason":"x","retry":true}`, 400, true),
		jobCall("fail", "embedded field in another case", "{held}", "A", `{"reason":"x","EXECUTION_TIME":1}`, 400, true),
		jobCall("fail", "trailing data", "{held}", "A", `{"reason":"x"}]`, 400, true),
		jobCall("fail", "over 256 KiB", "{held}", "A", `{"reason":"`+rep("x", 260<<10)+`"}`, 413, true),

		// GET /api/marketplace/jobs
		get("board/limit=abc", "/api/marketplace/jobs?limit=abc", "", 400),
		get("board/limit=0", "/api/marketplace/jobs?limit=0", "", 400),
		get("board/limit=-5", "/api/marketplace/jobs?limit=-5", "", 400),
		get("board/limit=1.5", "/api/marketplace/jobs?limit=1.5", "", 400),
		get("board/limit=1001", "/api/marketplace/jobs?limit=1001", "", 400),
		get("board/ok: limit=1000", "/api/marketplace/jobs?limit=1000", "", 200),

		// POST /api/admin/jobs/create
		{name: "create/no key", method: "POST", path: "/api/admin/jobs/create", body: okJob, status: 401},
		{name: "create/wrong key", method: "POST", path: "/api/admin/jobs/create", auth: "wrong", body: okJob, status: 401},
		{name: "create/wrong X-Admin-Key", method: "POST", path: "/api/admin/jobs/create", auth: "wrong-admin-h", body: okJob, status: 401},
		{name: "create/agent key", method: "POST", path: "/api/admin/jobs/create", auth: "A", body: okJob, status: 401},
		{name: "create/agent key as X-API-Key", method: "POST", path: "/api/admin/jobs/create", auth: "A-x", body: okJob, status: 401},
		{name: "create/admin key as Basic", method: "POST", path: "/api/admin/jobs/create", auth: "admin-basic", body: okJob, status: 401},
		create("job_type missing", `{"reward":0.001}`, 400, true),
		create("job_type as number", `{"job_type":1,"reward":0.001}`, 400, true),
		create("job_type unknown", `{"job_type":"mine-bitcoin","reward":0.001}`, 400, true),
		create("reward missing", `{"job_type":"test"}`, 400, true),
		create("reward negative", `{"job_type":"test","reward":-0.001}`, 400, true),
		create("reward negative string", `{"job_type":"test","reward":"-1"}`, 400, true),
		create("reward negative zero", `{"job_type":"test","reward":-0}`, 400, false),
		create("reward over 1,000,000 SOL", `{"job_type":"test","reward":1000000.000000001}`, 400, true),
		create("reward absurd", `{"job_type":"test","reward":99999999999}`, 400, true),
		create("reward absurd string", `{"job_type":"test","reward":"99999999999"}`, 400, false),
		create("reward overflows uint64", `{"job_type":"test","reward":100000000000000000000000}`, 400, true),
		create("reward 10 decimals", `{"job_type":"test","reward":0.0000000001}`, 400, false),
		create("reward 10 decimals string", `{"job_type":"test","reward":"0.0000000015"}`, 400, false),
		create("reward below one lamport", `{"job_type":"test","reward":1e-10}`, 400, false),
		create("reward with a fraction of a lamport", `{"job_type":"test","reward":1.0000000001}`, 400, false),
		create("reward exponent string below one lamport", `{"job_type":"test","reward":"1e-10"}`, 400, false),
		create("reward bad exponent", `{"job_type":"test","reward":"1e"}`, 400, true),
		create("reward true", `{"job_type":"test","reward":true}`, 400, true),
		create("reward false", `{"job_type":"test","reward":false}`, 400, true),
		create("reward object", `{"job_type":"test","reward":{"sol":1}}`, 400, true),
		create("reward array", `{"job_type":"test","reward":[1]}`, 400, true),
		create("reward null", `{"job_type":"test","reward":null}`, 400, true),
		create("reward empty string", `{"job_type":"test","reward":""}`, 400, true),
		create("reward words", `{"job_type":"test","reward":"one SOL"}`, 400, true),
		create("reward hex", `{"job_type":"test","reward":"0x10"}`, 400, true),
		create("reward and reward_lamports", `{"job_type":"test","reward":1,"reward_lamports":1}`, 400, true),
		create("reward_lamports negative", `{"job_type":"test","reward_lamports":-1}`, 400, true),
		create("reward_lamports fractional", `{"job_type":"test","reward_lamports":1.5}`, 400, true),
		create("reward_lamports below one", `{"job_type":"test","reward_lamports":1e-3}`, 400, true),
		create("reward_lamports over the maximum", `{"job_type":"test","reward_lamports":1000000000000001}`, 400, true),
		create("reward twice, other case", `{"job_type":"test","reward":0.001,"REWARD":1000000}`, 400, true),
		create("reward twice", `{"job_type":"test","reward":0.001,"reward":1000000}`, 400, false),
		create("job_type in another case", `{"Job_Type":"test","reward":0.001}`, 400, true),
		create("ok: env names are free", `{"job_type":"noop","reward":0.001,"env":{"Path":"a","PATH":"b"}}`, 201, false),
		create("requires_gpu as string", `{"job_type":"test","reward":0.001,"requires_gpu":"true"}`, 400, true),
		create("requires_gpu as number", `{"job_type":"test","reward":0.001,"requires_gpu":1}`, 400, true),
		create("GPU needs without requires_gpu", `{"job_type":"test","reward":0.001,"min_gpu_memory":1024}`, 400, false),
		create("gpu_count 65", `{"job_type":"test","reward":0.001,"requires_gpu":true,"gpu_count":65}`, 400, true),
		create("timeout_seconds negative", `{"job_type":"test","reward":0.001,"timeout_seconds":-1}`, 400, true),
		create("timeout_seconds over a week", `{"job_type":"test","reward":0.001,"timeout_seconds":604801}`, 400, true),
		create("max_attempts 21", `{"job_type":"test","reward":0.001,"max_attempts":21}`, 400, true),
		create("expires_in_seconds over 30 days", `{"job_type":"test","reward":0.001,"expires_in_seconds":2592001}`, 400, true),
		create("command on a test job", `{"job_type":"test","reward":0.001,"command":["ls"]}`, 400, false),
		create("command job without command", `{"job_type":"command","reward":0.001}`, 400, false),
		create("command as string", `{"job_type":"command","reward":0.001,"command":"rm -rf /"}`, 400, true),
		create("command with NUL", `{"job_type":"command","reward":0.001,"command":["a\u0000b"]}`, 400, false),
		create("container without image", `{"job_type":"container","reward":0.001}`, 400, false),
		create("network on a command job", `{"job_type":"command","reward":0.001,"command":["ls"],"network":true}`, 400, false),
		create("env bad name", `{"job_type":"test","reward":0.001,"env":{"1X":"y"}}`, 400, false),
		create("env value number", `{"job_type":"test","reward":0.001,"env":{"X":1}}`, 400, true),
		create("input_url not http", `{"job_type":"test","reward":0.001,"input_url":"file:///etc/passwd"}`, 400, false),
		create("input_sha256 not hex", `{"job_type":"test","reward":0.001,"input_url":"https://x.test/in","input_sha256":"zz"}`, 400, true),
		create("input_sha256 without input_url", `{"job_type":"test","reward":0.001,"input_sha256":"`+rep("a", 64)+`"}`, 400, false),
		create("description over 4 KiB", `{"job_type":"test","reward":0.001,"description":"`+rep("d", 5000)+`"}`, 400, true),
		create("unknown field", `{"job_type":"test","reward":0.001,"priority":5}`, 400, true),
		create("the seed's CLI flag name", `{"job_type":"test","reward":0.001,"requires-gpu":true}`, 400, true),
		create("malformed", `{"job_type":"test",`, 400, true),
		create("empty body", ``, 400, true),
		create("array body", `[`+okJob+`]`, 400, true),
		create("string body", `"test"`, 400, true),
		create("trailing data", okJob+okJob, 400, true),
		create("over 64 KiB", `{"job_type":"test","reward":0.001,"description":"`+rep("d", 70<<10)+`"}`, 413, true),
		{name: "create/text/plain", method: "POST", path: "/api/admin/jobs/create", auth: "admin", ct: "text/plain", body: okJob, status: 400},
		{name: "create/no Content-Type", method: "POST", path: "/api/admin/jobs/create", auth: "admin", ct: "none", body: okJob, status: 201},
		create("ok: exactly 1,000,000 SOL", `{"job_type":"noop","reward":1000000}`, 201, false),
		create("ok: zeros past 9 decimals", `{"job_type":"noop","reward":"0.0010000000"}`, 201, false),
		create("ok: reward_lamports", `{"job_type":"noop","reward_lamports":1}`, 201, false),
		{name: "create/idempotency key reused for another job", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":2}`, idemKey: `"fixture-key"`, status: 422},
		{name: "create/idempotency key unterminated", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: `"fixture-key`, status: 400},
		{name: "create/idempotency key bad escape", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: `"a\nb"`, status: 400},
		{name: "create/idempotency key after its quote", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: `"a"b`, status: 400},
		{name: "create/idempotency key empty", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: `""`, status: 400},
		{name: "create/idempotency key too long", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: rep("k", 256), status: 400},
		{name: "create/idempotency key on a bad body", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop"}`, idemKey: "k-unused", status: 400, docRejects: true},
		{name: "create/ok: idempotency key", method: "POST", path: "/api/admin/jobs/create", auth: "admin", body: `{"job_type":"noop","reward":1}`, idemKey: "k-fresh", status: 201},
		create("ok: reward_lamports exponent", `{"job_type":"noop","reward_lamports":5e3}`, 201, false),
		create("ok: reward_lamports as string", `{"job_type":"noop","reward_lamports":"1000"}`, 201, false),
		// What Python's json.dumps writes for small floats.
		create("ok: reward 1e-06", `{"job_type":"noop","reward":1e-06}`, 201, false),
		create("ok: reward 5e-05", `{"job_type":"noop","reward":5e-05}`, 201, false),
		create("ok: reward 1E-6", `{"job_type":"noop","reward":1E-6}`, 201, false),
		create("ok: reward 0.0010", `{"job_type":"noop","reward":0.0010}`, 201, false),
		create("ok: reward exponent string", `{"job_type":"noop","reward":"1e-3"}`, 201, false),
		{name: "create/ok: X-Admin-Key", method: "POST", path: "/api/admin/jobs/create", auth: "admin-h", body: okJob, status: 201},
		{name: "create/ok: admin key as X-API-Key", method: "POST", path: "/api/admin/jobs/create", auth: "admin-x", body: okJob, status: 201},

		// GET /api/admin/jobs
		get("jobs/no key", "/api/admin/jobs", "", 401),
		get("jobs/agent key", "/api/admin/jobs", "A", 401),
		get("jobs/limit=abc", "/api/admin/jobs?limit=abc", "admin", 400),
		get("jobs/limit=0", "/api/admin/jobs?limit=0", "admin", 400),
		get("jobs/limit=1001", "/api/admin/jobs?limit=1001", "admin", 400),
		get("jobs/status=bogus", "/api/admin/jobs?status=bogus", "admin", 400),
		get("jobs/status=AVAILABLE", "/api/admin/jobs?status=AVAILABLE", "admin", 400),
		get("jobs/ok: status=available", "/api/admin/jobs?status=available&limit=5", "admin", 200),

		// POST /api/admin/jobs/{id}/cancel
		{name: "cancel/no key", method: "POST", path: "/api/admin/jobs/{avail}/cancel", status: 401},
		{name: "cancel/agent key", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "A", status: 401},
		{name: "cancel/unknown job", method: "POST", path: "/api/admin/jobs/no-such-job/cancel", auth: "admin", status: 404},
		{name: "cancel/completed job", method: "POST", path: "/api/admin/jobs/{done}/cancel", auth: "admin", body: `{"reason":"x"}`, status: 409},
		{name: "cancel/reason over 4096 bytes", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "admin", body: `{"reason":"` + rep("r", 5000) + `"}`, status: 400, docRejects: true},
		{name: "cancel/reason as number", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "admin", body: `{"reason":1}`, status: 400, docRejects: true},
		{name: "cancel/unknown field", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "admin", body: `{"why":"x"}`, status: 400, docRejects: true},
		{name: "cancel/malformed", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "admin", body: `{"reason"`, status: 400, docRejects: true},
		{name: "cancel/over 64 KiB", method: "POST", path: "/api/admin/jobs/{avail}/cancel", auth: "admin", body: `{"reason":"` + rep("r", 70<<10) + `"}`, status: 413, docRejects: true},

		// GET /api/admin/stats, /api/admin/payments
		get("stats/no key", "/api/admin/stats", "", 401),
		get("stats/wrong key", "/api/admin/stats", "wrong", 401),
		get("stats/agent key", "/api/admin/stats", "A", 401),
		get("stats/ok", "/api/admin/stats", "admin", 200),
		get("payments/no key", "/api/admin/payments", "", 401),
		get("payments/status=bogus", "/api/admin/payments?status=bogus", "admin", 400),
		get("payments/status=paid", "/api/admin/payments?status=paid", "admin", 400),
		get("payments/limit=abc", "/api/admin/payments?limit=abc", "admin", 400),
		get("payments/limit=0", "/api/admin/payments?limit=0", "admin", 400),
		get("payments/ok", "/api/admin/payments?status=pending&limit=10", "admin", 200),

		// Wallet endpoints: this coordinator has no chain, so they answer 503.
		get("wallet/no key", "/api/admin/wallet", "", 401),
		get("wallet/agent key", "/api/admin/wallet", "A", 401),
		get("wallet/payments off", "/api/admin/wallet", "admin", 503),
		get("reconcile/no key", "/api/admin/reconcile", "", 401),
		get("reconcile/payments off", "/api/admin/reconcile", "admin", 503),
		get("me/no key", "/api/agents/me", "", 401),
		get("me/ok", "/api/agents/me", "A", 200),
		{name: "fund/no key", method: "POST", path: "/api/admin/wallet/fund", body: `{"amount":1}`, status: 401},
		{name: "fund/zero", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":0}`, status: 400},
		{name: "fund/negative", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":-1}`, status: 400},
		{name: "fund/too much", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":1000.5}`, status: 400, docRejects: true},
		{name: "fund/below one lamport", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":1e-12}`, status: 400},
		{name: "fund/missing", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{}`, status: 400, docRejects: true},
		{name: "fund/unknown field", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":1,"to":"x"}`, status: 400, docRejects: true},
		{name: "fund/over 64 KiB", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":"` + rep("1", 70<<10) + `"}`, status: 413},
		{name: "fund/payments off", method: "POST", path: "/api/admin/wallet/fund", auth: "admin", body: `{"amount":1}`, status: 503},

		// Wrong method on a known path: 405, JSON, Allow.
		{name: "405/GET register", method: "GET", path: "/api/agents/register", status: 405},
		{name: "405/PUT available", method: "PUT", path: "/api/jobs/available", auth: "A", body: `{}`, status: 405},
		{name: "405/DELETE a job", method: "DELETE", path: "/api/jobs/{avail}", auth: "admin", status: 405},
		{name: "405/GET accept", method: "GET", path: "/api/jobs/{avail}/accept", auth: "A", status: 405},
		{name: "405/GET create", method: "GET", path: "/api/admin/jobs/create", auth: "admin", status: 405},
		{name: "405/POST stats", method: "POST", path: "/api/admin/stats", auth: "admin", status: 405},
		{name: "405/POST health", method: "POST", path: "/health", status: 405},
		{name: "405/PATCH agents", method: "PATCH", path: "/api/marketplace/agents", status: 405},
		{name: "405/OPTIONS register", method: "OPTIONS", path: "/api/agents/register", status: 405},

		// Unknown path: 404, JSON.
		get("404/nope", "/nope", "", 404),
		get("404/root", "/", "", 404),
		get("404/node API path", "/api/jobs", "", 404),
		get("404/trailing slash", "/api/jobs/{avail}/", "admin", 404),
		get("404/admin path", "/api/admin/nope", "admin", 404),
		{name: "404/unknown verb", method: "POST", path: "/api/jobs/{avail}/explode", auth: "A", status: 404},
		{name: "404/POST agents", method: "POST", path: "/api/agents", body: okReg, status: 404},
	}
}

// TestBadInputs sends every row of badCases to a real coordinator and
// checks the exact status, a JSON error body, that nothing is a 5xx (the
// checker holds every exchange to the document), that the document
// refuses what the decoder refuses, that every 4xx the document names is
// reached by some row, and that no refused request changed a job.
func TestBadInputs(t *testing.T) {
	// Limits off: the rows are one client's hundreds of requests, many of
	// them failed authentications; TestLimits* reach the documented 429s.
	m := newMarket(t, marketOpts{limits: httpapi.Limits{Off: true}})
	m.serve(t)
	ctx := t.Context()
	pub := m.client(t, "", "")
	admin := m.client(t, "", adminKey)
	ra, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB, GPUModel: "Demo GPU", GPUVendor: "Demo", GPUMemory: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	a := pub.WithAPIKey(ra.APIKey)
	mk := func(req httpapi.CreateJobRequest) node3.Job {
		t.Helper()
		j, err := admin.CreateJob(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	avail := mk(httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(1000)})
	big := mk(httpapi.CreateJobRequest{JobType: "test", Reward: httpapi.SOL(2000), RequiresGPU: true, MinGPUMemory: 16 << 30})
	held := mk(httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(3000)})
	done := mk(httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(4000)})
	for _, id := range []string{held.ID, done.ID} {
		if _, err := a.Accept(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Heartbeat(ctx, held.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Complete(ctx, done.ID, httpapi.CompleteRequest{JobResult: node3.JobResult{ExecutionTime: 1}}); err != nil {
		t.Fatal(err)
	}
	ids := strings.NewReplacer("{avail}", avail.ID, "{big}", big.ID, "{held}", held.ID, "{done}", done.ID)
	snapshot := func() map[string]string {
		out := make(map[string]string)
		for _, id := range []string{avail.ID, big.ID, held.ID, done.ID} {
			j, err := admin.Job(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(j)
			out[id] = string(b)
		}
		return out
	}
	// The job the 422 row's key was first used for.
	if _, err := admin.CreateJobOnce(ctx, "fixture-key", httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(1)}, httpapi.Retry{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot()

	keys := map[string][2]string{
		"A":             {"Authorization", "Bearer " + ra.APIKey},
		"A-x":           {"X-API-Key", ra.APIKey},
		"B":             {"Authorization", "Bearer " + rb.APIKey},
		"admin":         {"Authorization", "Bearer " + adminKey},
		"admin-x":       {"X-API-Key", adminKey},
		"admin-h":       {"X-Admin-Key", adminKey},
		"admin-basic":   {"Authorization", "Basic " + adminKey},
		"wrong":         {"Authorization", "Bearer n3_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		"wrong-h":       {"X-API-Key", "n3_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		"wrong-admin-h": {"X-Admin-Key", "not-the-admin-key"},
	}
	seen := make(map[string]bool) // "METHOD /template status"
	names := make(map[string]bool)
	for _, c := range badCases() {
		if names[c.name] {
			t.Errorf("duplicate row name %q", c.name)
		}
		names[c.name] = true
		path := ids.Replace(c.path)
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequestWithContext(ctx, c.method, m.srv.URL+path, body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		switch {
		case c.ct == "none":
		case c.ct != "":
			req.Header.Set("Content-Type", c.ct)
		case c.body != "":
			req.Header.Set("Content-Type", "application/json")
		}
		if c.auth != "" {
			kv, ok := keys[c.auth]
			if !ok {
				t.Fatalf("%s: unknown auth %q", c.name, c.auth)
			}
			req.Header.Set(kv[0], kv[1])
		}
		if c.idemKey != "" {
			req.Header.Set("Idempotency-Key", c.idemKey)
		}
		resp, err := m.hc.Do(req) // the checker holds it to the document
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: %s %.80s: status %d, want %d: %.200s", c.name, c.method, path, resp.StatusCode, c.status, raw)
		}
		if c.status >= 400 {
			var eb struct {
				Error string `json:"error"`
				Code  string `json:"code"`
			}
			if err := json.Unmarshal(raw, &eb); err != nil || eb.Error == "" || eb.Code == "" {
				t.Errorf("%s: error body %.200q is not {\"error\": …, \"code\": …} (%v)", c.name, raw, err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q", c.name, ct)
			}
			if resp.StatusCode == 401 && c.auth == "" && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", c.name)
			}
		}
		if c.docRejects {
			if err := m.doc.CheckRequest(c.method, path, []byte(c.body)); err == nil {
				t.Errorf("%s: the server refuses %.100q but the document's schema accepts it", c.name, c.body)
			}
		}
		if tmpl, _, ok := m.doc.Operation(c.method, req.URL.EscapedPath()); ok {
			seen[fmt.Sprintf("%s %s %d", c.method, tmpl, resp.StatusCode)] = true
		}
	}
	// Every 4xx the document promises is reached by some row.
	for op, codes := range m.doc.ErrorStatuses() {
		for _, code := range codes {
			if code == http.StatusTooManyRequests {
				continue // a limit, not bad input: see limits_test.go
			}
			if !seen[fmt.Sprintf("%s %d", op, code)] {
				t.Errorf("%s: no row reaches the documented %d", op, code)
			}
		}
	}
	after := snapshot()
	for id, b := range before {
		if after[id] != b {
			t.Errorf("job %s changed under refused requests:\nbefore %s\nafter  %s", id, b, after[id])
		}
	}
	// Only the fixtures and the sanity rows created jobs.
	if st, err := admin.Stats(ctx); err != nil || st.JobsTotal != 5+countCreated(badCases()) {
		t.Errorf("jobs created: %d, want %d (%v)", st.JobsTotal, 5+countCreated(badCases()), err)
	}
}

func countCreated(cs []badCase) int64 {
	return int64(len(slices.DeleteFunc(slices.Clone(cs), func(c badCase) bool { return c.path != "/api/admin/jobs/create" || c.status != 201 })))
}
