package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/node3/node3"
)

// This file holds the route tables, the OpenAPI documents and the Go types
// together: every route is documented and every documented operation is
// routed; every schema names exactly the JSON fields its Go type has; and
// apiDoc can check a live request or response against the document (the
// external tests run every response they get through it).

// apiDoc is a parsed OpenAPI 3.0 document with a small JSON Schema checker:
// $ref, allOf/anyOf/oneOf, nullable, type, enum, properties, required,
// additionalProperties, items, min/max(Length|Items|imum), maxProperties,
// pattern and the date-time format. That is the subset the node3 documents
// use.
type apiDoc struct {
	root map[string]any

	mu       sync.Mutex // guards patterns
	patterns map[string]*regexp.Regexp
}

func parseDoc(b []byte) (*apiDoc, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	return &apiDoc{root: root, patterns: make(map[string]*regexp.Regexp)}, nil
}

func mustDoc(t testing.TB, b []byte) *apiDoc {
	t.Helper()
	d, err := parseDoc(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var docMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// ref resolves a local reference such as #/components/schemas/Job.
func (d *apiDoc) ref(ref string) (map[string]any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("reference %q is not local", ref)
	}
	var cur any = d.root
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m := obj(cur)
		if m == nil {
			return nil, fmt.Errorf("reference %q does not resolve", ref)
		}
		var ok bool
		if cur, ok = m[part]; !ok {
			return nil, fmt.Errorf("reference %q does not resolve", ref)
		}
	}
	if obj(cur) == nil {
		return nil, fmt.Errorf("reference %q is not an object", ref)
	}
	return obj(cur), nil
}

// deref follows $ref until it reaches an object without one.
func (d *apiDoc) deref(m map[string]any) (map[string]any, error) {
	for i := 0; i < 16; i++ {
		r, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		var err error
		if m, err = d.ref(r); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("reference chain too long")
}

// operations lists the document's operations as "METHOD /path".
func (d *apiDoc) operations() map[string]map[string]any {
	out := make(map[string]map[string]any)
	for path, item := range obj(d.root["paths"]) {
		for _, m := range docMethods {
			if op := obj(obj(item)[m]); op != nil {
				out[strings.ToUpper(m)+" "+path] = op
			}
		}
	}
	return out
}

// matches lists the documented path templates a request path falls
// under, most specific first (fewest parameters), as ServeMux ranks them.
func (d *apiDoc) matches(path string) []string {
	type cand struct {
		tmpl   string
		params int
	}
	var out []cand
	segs := strings.Split(path, "/")
	for tmpl := range obj(d.root["paths"]) {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		params, ok := 0, true
		for i, ts := range tsegs {
			if strings.HasPrefix(ts, "{") && strings.HasSuffix(ts, "}") {
				params++
				ok = ok && segs[i] != ""
			} else {
				ok = ok && ts == segs[i]
			}
		}
		if ok {
			out = append(out, cand{tmpl, params})
		}
	}
	slices.SortFunc(out, func(a, b cand) int { return a.params - b.params })
	tmpls := make([]string, len(out))
	for i, c := range out {
		tmpls[i] = c.tmpl
	}
	return tmpls
}

// Operation returns the template and operation that serve a request: the
// most specific template documenting the method. When the path is
// documented only under other methods, it returns the template and false.
func (d *apiDoc) Operation(method, path string) (string, map[string]any, bool) {
	tmpls := d.matches(path)
	for _, tmpl := range tmpls {
		if op := obj(obj(obj(d.root["paths"])[tmpl])[strings.ToLower(method)]); op != nil {
			return tmpl, op, true
		}
	}
	if len(tmpls) > 0 {
		return tmpls[0], nil, false
	}
	return "", nil, false
}

// ErrorStatuses lists, for every operation ("METHOD /template"), the 4xx
// statuses its document names.
func (d *apiDoc) ErrorStatuses() map[string][]int {
	out := make(map[string][]int)
	for name, op := range d.operations() {
		for code := range obj(op["responses"]) {
			if n, err := strconv.Atoi(code); err == nil && n >= 400 && n < 500 {
				out[name] = append(out[name], n)
			}
		}
		slices.Sort(out[name])
	}
	return out
}

// CheckResponse checks a response against the document: a documented
// status (the default response only for 5xx), and a JSON body that the
// response's schema accepts, strictly: an object may not carry a property
// its schema does not declare. A request that no route takes must be a 404
// (unknown path) or 405 (known path, other method, with Allow) with the
// error body.
func (d *apiDoc) CheckResponse(method, path string, status int, h http.Header, body []byte) error {
	errSchema := map[string]any{"$ref": "#/components/schemas/Error"}
	tmpl, op, ok := d.Operation(method, path)
	if !ok {
		want := http.StatusNotFound
		if tmpl != "" {
			want = http.StatusMethodNotAllowed
		}
		// GET covers HEAD in the router.
		if tmpl != "" && method == http.MethodHead && obj(obj(obj(d.root["paths"])[tmpl])["get"]) != nil {
			return nil
		}
		if status != want {
			return fmt.Errorf("%s %s is not documented (template %q): got %d, want %d", method, path, tmpl, status, want)
		}
		if want == http.StatusMethodNotAllowed && len(h.Values("Allow")) == 0 {
			return fmt.Errorf("%s %s: 405 without an Allow header", method, path)
		}
		return d.checkJSON(errSchema, h, body, true)
	}
	resps := obj(op["responses"])
	resp := obj(resps[strconv.Itoa(status)])
	if resp == nil {
		if status < 500 || resps["default"] == nil {
			return fmt.Errorf("%s %s: status %d is not documented", method, tmpl, status)
		}
		resp = obj(resps["default"])
	}
	resp, err := d.deref(resp)
	if err != nil {
		return err
	}
	content := obj(resp["content"])
	if len(content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s %s %d: documented without a body, got %d bytes", method, tmpl, status, len(body))
		}
		return nil
	}
	if mt := obj(content["application/json"]); mt != nil {
		if err := d.checkJSON(obj(mt["schema"]), h, body, true); err != nil {
			return fmt.Errorf("%s %s %d: %w", method, tmpl, status, err)
		}
		return nil
	}
	for ct := range content {
		if got := h.Get("Content-Type"); !strings.HasPrefix(got, ct) {
			return fmt.Errorf("%s %s %d: Content-Type %q, documented %q", method, tmpl, status, got, ct)
		}
	}
	return nil
}

func (d *apiDoc) checkJSON(schema map[string]any, h http.Header, body []byte, strict bool) error {
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type is %q, not application/json", ct)
	}
	v, err := decodeAny(body)
	if err != nil {
		return err
	}
	return d.validate(schema, v, "$", strict)
}

// CheckRequest checks a JSON request body against the operation's
// requestBody schema.
func (d *apiDoc) CheckRequest(method, path string, body []byte) error {
	tmpl, op, ok := d.Operation(method, path)
	if !ok {
		return fmt.Errorf("%s %s is not documented", method, path)
	}
	rb, err := d.deref(obj(op["requestBody"]))
	if err != nil {
		return err
	}
	schema := obj(obj(obj(rb["content"])["application/json"])["schema"])
	if schema == nil {
		if len(bytes.TrimSpace(body)) > 0 {
			return fmt.Errorf("%s %s takes no body", method, tmpl)
		}
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if rb["required"] == true {
			return fmt.Errorf("%s %s: the body is required", method, tmpl)
		}
		return nil
	}
	v, err := decodeAny(body)
	if err != nil {
		return err
	}
	return d.validate(schema, v, "$", false)
}

func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("body holds more than one JSON value")
	}
	return v, nil
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "number"
		}
		return "integer"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

// validate checks v against schema. strict: an object whose schema lists
// properties and says nothing of additionalProperties may carry no others
// (for responses: the document must name every field the code sends).
func (d *apiDoc) validate(schema map[string]any, v any, at string, strict bool) error {
	s, err := d.deref(schema)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	if v == nil && s["nullable"] == true {
		return nil
	}
	for _, sub := range asSlice(s["allOf"]) {
		if err := d.validate(obj(sub), v, at, strict); err != nil {
			return err
		}
	}
	if subs := asSlice(s["anyOf"]); len(subs) > 0 {
		var first error
		for _, sub := range subs {
			if err := d.validate(obj(sub), v, at, strict); err == nil {
				first = nil
				break
			} else if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("%s: matches none of anyOf: %w", at, first)
		}
	}
	if subs := asSlice(s["oneOf"]); len(subs) > 0 {
		n := 0
		var errs []string
		for _, sub := range subs {
			if err := d.validate(obj(sub), v, at, strict); err == nil {
				n++
			} else {
				errs = append(errs, err.Error())
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: matches %d of oneOf, want exactly 1 (%s)", at, n, strings.Join(errs, "; "))
		}
	}
	got := jsonType(v)
	if want, ok := s["type"].(string); ok {
		if got != want && !(want == "number" && got == "integer") {
			return fmt.Errorf("%s: %s, want %s", at, got, want)
		}
	}
	if enum := asSlice(s["enum"]); enum != nil {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
		}
	}
	switch x := v.(type) {
	case string:
		n := utf8.RuneCountInString(x)
		if m, ok := num(s["maxLength"]); ok && float64(n) > m {
			return fmt.Errorf("%s: longer than %v", at, m)
		}
		if m, ok := num(s["minLength"]); ok && float64(n) < m {
			return fmt.Errorf("%s: shorter than %v", at, m)
		}
		if p, ok := s["pattern"].(string); ok {
			re, err := d.pattern(p)
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			if !re.MatchString(x) {
				return fmt.Errorf("%s: %q does not match %s", at, x, p)
			}
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, x)
			}
		}
	case json.Number:
		f, _ := x.Float64()
		if m, ok := num(s["minimum"]); ok && f < m {
			return fmt.Errorf("%s: %s is below %v", at, x, m)
		}
		if m, ok := num(s["maximum"]); ok && f > m {
			return fmt.Errorf("%s: %s is above %v", at, x, m)
		}
		if m, ok := num(s["multipleOf"]); ok && math.Mod(f, m) != 0 {
			return fmt.Errorf("%s: %s is not a multiple of %v", at, x, m)
		}
	case []any:
		if m, ok := num(s["maxItems"]); ok && float64(len(x)) > m {
			return fmt.Errorf("%s: more than %v items", at, m)
		}
		if items := obj(s["items"]); items != nil {
			for i, e := range x {
				if err := d.validate(items, e, fmt.Sprintf("%s[%d]", at, i), strict); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, r := range asSlice(s["required"]) {
			if _, ok := x[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q is missing", at, r)
			}
		}
		if m, ok := num(s["maxProperties"]); ok && float64(len(x)) > m {
			return fmt.Errorf("%s: more than %v properties", at, m)
		}
		props := obj(s["properties"])
		for _, k := range slices.Sorted(maps.Keys(x)) {
			where := at + "." + k
			if p, ok := props[k]; ok {
				if err := d.validate(obj(p), x[k], where, strict); err != nil {
					return err
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: property not allowed", where)
				}
			case map[string]any:
				if err := d.validate(ap, x[k], where, strict); err != nil {
					return err
				}
			case nil:
				if strict && props != nil {
					return fmt.Errorf("%s: property not in the document", where)
				}
			}
		}
	}
	return nil
}

func (d *apiDoc) pattern(p string) (*regexp.Regexp, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	re, ok := d.patterns[p]
	if !ok {
		var err error
		if re, err = regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		d.patterns[p] = re
	}
	return re, nil
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// --- the tests ---

type server struct {
	name   string
	doc    []byte
	routes []route
	h      http.Handler
}

func servers() []server {
	m := NewMarketplace(MarketplaceConfig{})
	n := NewNodeAPI(NodeConfig{AllowedHosts: []string{"example.com"}}) // httptest's Host
	return []server{
		{"marketplace", marketplaceOpenAPI, m.routes(), m},
		{"node", nodeOpenAPI, n.routes(), n},
	}
}

// TestOpenAPIMatchesRoutes: the route table and the document name the same
// operations, with the same summaries.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	for _, s := range servers() {
		t.Run(s.name, func(t *testing.T) {
			doc := mustDoc(t, s.doc)
			ops := doc.operations()
			routed := make(map[string]bool)
			for _, r := range s.routes {
				name := r.method + " " + r.path
				routed[name] = true
				op, ok := ops[name]
				if !ok {
					t.Errorf("route %s is not in the OpenAPI document", name)
					continue
				}
				if op["summary"] != r.summary {
					t.Errorf("%s: document summary %q, route summary %q", name, op["summary"], r.summary)
				}
			}
			for name := range ops {
				if !routed[name] {
					t.Errorf("documented operation %s has no route", name)
				}
			}
		})
	}
}

// TestOpenAPIDocumentsAreConsistent checks what a generic validator would
// not: every reference resolves, path parameters are declared, operations
// that take credentials document 401, those that take a body document 400
// and 413, those with query parameters 400, every operation has a unique
// operationId and a JSON success response, error responses use the Error
// schema.
func TestOpenAPIDocumentsAreConsistent(t *testing.T) {
	paramRE := regexp.MustCompile(`\{([^}]+)\}`)
	for _, s := range servers() {
		t.Run(s.name, func(t *testing.T) {
			doc := mustDoc(t, s.doc)
			if doc.root["openapi"] != "3.0.3" {
				t.Errorf("openapi is %v, want 3.0.3", doc.root["openapi"])
			}
			var walk func(v any, at string)
			walk = func(v any, at string) {
				switch x := v.(type) {
				case map[string]any:
					if r, ok := x["$ref"].(string); ok {
						if _, err := doc.ref(r); err != nil {
							t.Errorf("%s: %v", at, err)
						}
					}
					for k, e := range x {
						walk(e, at+"/"+k)
					}
				case []any:
					for i, e := range x {
						walk(e, fmt.Sprintf("%s/%d", at, i))
					}
				}
			}
			walk(doc.root, "#")
			ids := make(map[string]string)
			for name, op := range doc.operations() {
				path := strings.SplitN(name, " ", 2)[1]
				if id, _ := op["operationId"].(string); id == "" {
					t.Errorf("%s has no operationId", name)
				} else if other, dup := ids[id]; dup {
					t.Errorf("%s and %s share operationId %q", name, other, id)
				} else {
					ids[id] = name
				}
				declared := make(map[string]string)
				for _, p := range asSlice(op["parameters"]) {
					p, err := doc.deref(obj(p))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					declared[p["name"].(string)] = p["in"].(string)
					if p["in"] == "path" && p["required"] != true {
						t.Errorf("%s: path parameter %v is not required", name, p["name"])
					}
				}
				want := 0
				for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
					want++
					if declared[m[1]] != "path" {
						t.Errorf("%s: path parameter {%s} is not declared", name, m[1])
					}
				}
				query := false
				got := 0
				for _, in := range declared {
					if in == "path" {
						got++
					}
					query = query || in == "query"
				}
				if got != want {
					t.Errorf("%s: declares %d path parameters, the path has %d", name, got, want)
				}
				resps := obj(op["responses"])
				has := func(code string) bool { return resps[code] != nil }
				ok2xx := false
				for code := range resps {
					if strings.HasPrefix(code, "2") {
						ok2xx = true
					}
				}
				if !ok2xx {
					t.Errorf("%s documents no success response", name)
				}
				if sec, ok := op["security"].([]any); ok && len(sec) > 0 && !has("401") {
					t.Errorf("%s takes credentials but documents no 401", name)
				}
				if op["requestBody"] != nil && (!has("400") || !has("413")) {
					t.Errorf("%s takes a body but does not document 400 and 413", name)
				}
				if query && !has("400") {
					t.Errorf("%s takes query parameters but does not document 400", name)
				}
				for code, r := range resps {
					if code != "default" && code < "400" {
						continue
					}
					r, err := doc.deref(obj(r))
					if err != nil {
						t.Fatalf("%s %s: %v", name, code, err)
					}
					sch := obj(obj(obj(r["content"])["application/json"])["schema"])
					if sch["$ref"] != "#/components/schemas/Error" {
						t.Errorf("%s %s: error response schema is %v, want the Error schema", name, code, sch)
					}
				}
			}
		})
	}
}

// TestOpenAPIServed: GET /openapi.json serves the embedded document, which
// is JSON with openapi 3.0.3.
func TestOpenAPIServed(t *testing.T) {
	for _, s := range servers() {
		t.Run(s.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /openapi.json: %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var doc struct {
				OpenAPI string                    `json:"openapi"`
				Info    struct{ Title string }    `json:"info"`
				Paths   map[string]map[string]any `json:"paths"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatalf("served document is not JSON: %v", err)
			}
			if doc.OpenAPI != "3.0.3" || doc.Info.Title == "" || len(doc.Paths) == 0 {
				t.Errorf("served document: openapi %q, title %q, %d paths", doc.OpenAPI, doc.Info.Title, len(doc.Paths))
			}
			if !bytes.Equal(rec.Body.Bytes(), s.doc) {
				t.Errorf("served document differs from the embedded one")
			}
		})
	}
}

// jsonFields lists the JSON object keys a struct type encodes to, with
// whether each may be left out (omitempty/omitzero).
func jsonFields(t reflect.Type) map[string]bool {
	out := make(map[string]bool)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			maps.Copy(out, jsonFields(f.Type))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
	}
	return out
}

// TestOpenAPISchemasMatchTypes: each component schema names exactly the
// JSON fields of the Go type behind it, and (for response types) requires
// exactly those the encoder never leaves out.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	type row struct {
		schema   string
		typ      any
		response bool // check required against omitempty
	}
	common := []row{
		{"Error", errorBody{}, false}, // code is always set, though omitempty
		{"GPU", node3.GPU{}, false},
		{"JobResult", node3.JobResult{}, false},
		{"Job", JobView{}, true},
		{"JobsResponse", JobsResponse{}, true},
		{"Agent", AgentView{}, true},
		{"AgentsResponse", AgentsResponse{}, true},
	}
	docs := map[string][]row{
		"marketplace": append(slices.Clone(common),
			row{"Health", HealthResponse{}, true},
			row{"RegisterRequest", RegisterRequest{}, false},
			row{"RegisterResponse", RegisterResponse{}, true},
			row{"AvailableRequest", AvailableRequest{}, false},
			row{"EmptyObject", struct{}{}, false},
			row{"FailRequest", FailRequest{}, false},
			row{"CancelRequest", CancelRequest{}, false},
			row{"CreateJobRequest", CreateJobRequest{}, false},
			row{"JobResponse", JobResponse{}, true},
			row{"Stats", StatsResponse{}, true},
			row{"Payout", PayoutView{}, true},
			row{"PayoutsResponse", PayoutsResponse{}, true},
			row{"WalletInfo", WalletInfo{}, true},
			row{"FundRequest", FundRequest{}, false},
			row{"FundResponse", FundResponse{}, true},
			row{"ReconcileResponse", ReconcileResponse{}, true},
		),
		"node": append(slices.Clone(common),
			row{"GPUMetrics", node3.GPUMetrics{}, true},
			row{"NodeStatus", NodeStatus{}, true},
			row{"P2PStatus", P2PStatus{}, true},
			row{"TopicStatus", TopicStatus{}, true},
			row{"Earnings", EarningsResponse{}, true},
		),
	}
	for _, s := range servers() {
		t.Run(s.name, func(t *testing.T) {
			doc := mustDoc(t, s.doc)
			schemas := obj(obj(doc.root["components"])["schemas"])
			for _, r := range docs[s.name] {
				sch := obj(schemas[r.schema])
				if sch == nil {
					t.Errorf("schema %s is missing", r.schema)
					continue
				}
				fields := jsonFields(reflect.TypeOf(r.typ))
				props := obj(sch["properties"])
				for f := range fields {
					if _, ok := props[f]; !ok {
						t.Errorf("%s: field %q of %T is not documented", r.schema, f, r.typ)
					}
				}
				for p := range props {
					if _, ok := fields[p]; !ok {
						t.Errorf("%s: documented property %q is not a field of %T", r.schema, p, r.typ)
					}
				}
				if !r.response {
					continue
				}
				required := make(map[string]bool)
				for _, q := range asSlice(sch["required"]) {
					required[q.(string)] = true
				}
				for f, omit := range fields {
					if !omit && !required[f] {
						t.Errorf("%s: %q is always sent but not required", r.schema, f)
					}
					if omit && required[f] {
						t.Errorf("%s: %q may be left out but is required", r.schema, f)
					}
				}
			}
			enums := map[string][]string{
				"JobStatus": statusNames(node3.AllStatuses),
				"JobKind":   {"noop", "test", "benchmark", "command", "container"},
			}
			if s.name == "marketplace" {
				enums["PayoutStatus"] = []string{"pending", "sent", "confirmed", "finalized", "failed"}
				var jobs []string
				for k := range obj(obj(obj(schemas["Stats"])["properties"])["jobs"])["properties"].(map[string]any) {
					jobs = append(jobs, k)
				}
				if !sameSet(jobs, statusNames(node3.AllStatuses)) {
					t.Errorf("Stats.jobs names %v, want every job state", jobs)
				}
			}
			for name, want := range enums {
				var got []string
				for _, e := range asSlice(obj(schemas[name])["enum"]) {
					got = append(got, e.(string))
				}
				if !sameSet(got, want) {
					t.Errorf("%s enum %v, want %v", name, got, want)
				}
			}
			for _, k := range []node3.JobKind{"noop", "test", "benchmark", "command", "container"} {
				if !k.Known() {
					t.Errorf("job kind %q in the document is not known to node3", k)
				}
			}
		})
	}
}

func statusNames(ss []node3.JobStatus) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// fakeNode serves fully populated values, so that every optional field
// shows up in a response.
type fakeNode struct{ now time.Time }

func fullJob(now time.Time) node3.Job {
	return node3.Job{
		ID: "0197a3c1-0000-7000-8000-000000000001",
		JobSpec: node3.JobSpec{
			Kind: node3.KindContainer, Description: "train", Reward: 1_500_000,
			Requirements: node3.Requirements{GPU: true, MinGPUMemory: 16 << 30, GPUVendor: "nvidia", GPUModel: "4090", GPUCount: 2},
			Framework:    "pytorch", Image: "train:1", Command: []string{"python", "train.py"}, Env: map[string]string{"TOKEN": "s3cret"},
			Network: true, TimeoutSecs: 600, MaxAttempts: 3, InputURL: "https://example.com/in", InputSHA256: strings.Repeat("a", 64),
			OutputURL: "https://example.com/out", TTLSecs: 3600,
		},
		Status: node3.StatusRunning, Attempt: 1, AgentID: "agent-1",
		CreatedAt: now.Add(-time.Minute), UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
		AcceptedAt: now.Add(-30 * time.Second), StartedAt: now.Add(-20 * time.Second), FinishedAt: now, LeaseExpiresAt: now.Add(20 * time.Second),
		Result: &node3.JobResult{ExecutionTime: 1.5, SetupTime: 0.5, ExitCode: 0, Output: "done", Metrics: map[string]float64{"tflops": 81.2}, OutputSHA256: strings.Repeat("b", 64)},
		Error:  "lease lost; requeued",
	}
}

func (f fakeNode) Status(context.Context) (NodeStatus, error) {
	return NodeStatus{
		NodeID: "agent-1", Version: "v1", Provider: true, DemoMode: true, MarketplaceURL: "http://localhost:8000",
		AgentID: "agent-1", Registered: true, Connected: true, WalletAddress: "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
		GPUs:       []node3.GPU{{Index: 0, UUID: "GPU-1", Vendor: "NVIDIA", Model: "RTX 4090", MemoryBytes: 24 << 30, Driver: "550", Simulated: true}},
		GPUMetrics: []node3.GPUMetrics{{Index: 0, UtilizationPct: 12.5, MemoryUsed: 1 << 30, TemperatureC: 40, PowerW: 80}},
		ActiveJobs: []string{"0197a3c1-0000-7000-8000-000000000001"}, Slots: 1, PendingReports: 2,
		StartedAt: f.now.Add(-time.Hour), UptimeSeconds: 3600,
		P2P: &P2PStatus{
			PeerID: "12D3KooWRGDGaCsCwHScggvTUaiGAJmxfmEiqBe94SuSbr3j6BPt", Network: "mainnet",
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWRGDGaCsCwHScggvTUaiGAJmxfmEiqBe94SuSbr3j6BPt"},
			Peers:       3, Topics: []TopicStatus{{Name: "/node3/mainnet/jobs/1", Peers: 3}, {Name: "/node3/mainnet/providers/1", Peers: 3}},
			TrustedCoordinators: []string{"12D3KooWMvHAn2TZjgXJvjpvALvnLwFL9cZFrAftCGkzcumgDEmy"},
			ProvidersKnown:      4, Transport: "libp2p", OpenJobs: 2,
		},
	}, nil
}

func (f fakeNode) LocalJobs(_ context.Context, limit int) ([]node3.Job, error) {
	return []node3.Job{fullJob(f.now)}, nil
}

func (f fakeNode) Earnings(context.Context) (node3.Earnings, error) {
	return node3.Earnings{Total: 2_500_000_000, Today: 1_000_000, Completed: 3, Failed: 1}, nil
}

func (f fakeNode) MarketplaceJobs(context.Context) ([]node3.Job, error) {
	return []node3.Job{fullJob(f.now)}, nil
}

func (f fakeNode) MarketplaceAgents(context.Context) ([]AgentView, error) {
	return []AgentView{{
		Agent: node3.Agent{
			ID: "agent-1", WalletAddress: "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30,
			GPUs: []node3.GPU{{Vendor: "NVIDIA", Model: "RTX 4090", MemoryBytes: 24 << 30}}, Version: "v1",
			RegisteredAt: f.now, LastSeen: f.now, JobsCompleted: 3, JobsFailed: 1, Earned: 2_500_000_000,
		},
		Status: "online", Earned: "2.5",
	}}, nil
}

// failingNode fails every call the way a node whose coordinator is gone does.
type failingNode struct{}

func (failingNode) Status(context.Context) (NodeStatus, error) {
	return NodeStatus{}, fmt.Errorf("disk on fire")
}
func (failingNode) LocalJobs(context.Context, int) ([]node3.Job, error) {
	return nil, node3.Errorf(node3.CodeUnavailable, "ledger is closed")
}
func (failingNode) Earnings(context.Context) (node3.Earnings, error) {
	return node3.Earnings{}, node3.Errorf(node3.CodeUnavailable, "ledger is closed")
}
func (failingNode) MarketplaceJobs(context.Context) ([]node3.Job, error) {
	return nil, node3.Errorf(node3.CodeUnavailable, "GET /api/marketplace/jobs: connection refused")
}
func (failingNode) MarketplaceAgents(context.Context) ([]AgentView, error) {
	return nil, node3.Errorf(node3.CodeUnavailable, "GET /api/marketplace/agents: connection refused")
}

// TestNodeAPIMatchesDocument requests every node route (and some bad
// ones) and checks each answer against node.json; the public listing hides
// env values and output.
func TestNodeAPIMatchesDocument(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	doc := mustDoc(t, nodeOpenAPI)
	good := NewNodeAPI(NodeConfig{Node: fakeNode{now: now}, Now: func() time.Time { return now }})
	bad := NewNodeAPI(NodeConfig{Node: failingNode{}})
	for _, c := range []struct {
		h            http.Handler
		method, path string
		want         int
		host         string // default localhost:8080
	}{
		{good, "GET", "/api/status", 421, "evil.example"},
		{good, "GET", "/api/jobs?limit=abc", 421, "evil.example:8080"},
		{good, "GET", "/openapi.json", 421, "127.0.0.1.evil.example"},
		{good, "GET", "/metrics", 200, "127.0.0.1:8080"},
		{good, "GET", "/metrics", 200, "[::1]:8080"},
		{good, "GET", "/api/status", 200, ""},
		{good, "GET", "/api/jobs", 200, ""},
		{good, "GET", "/api/jobs?limit=1000", 200, ""},
		{good, "GET", "/api/earnings", 200, ""},
		{good, "GET", "/api/marketplace/jobs", 200, ""},
		{good, "GET", "/api/marketplace/agents", 200, ""},
		{good, "GET", "/openapi.json", 200, ""},
		{good, "GET", "/metrics", 200, ""},
		{good, "GET", "/api/jobs?limit=abc", 400, ""},
		{good, "GET", "/api/jobs?limit=0", 400, ""},
		{good, "GET", "/api/jobs?limit=1001", 400, ""},
		{good, "POST", "/api/status", 405, ""},
		{good, "DELETE", "/api/jobs", 405, ""},
		{good, "GET", "/api/nope", 404, ""},
		{good, "GET", "/", 404, ""},
		{bad, "GET", "/api/status", 500, ""},
		{bad, "GET", "/api/jobs", 503, ""},
		{bad, "GET", "/api/earnings", 503, ""},
		{bad, "GET", "/api/marketplace/jobs", 503, ""},
		{bad, "GET", "/api/marketplace/agents", 503, ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, nil)
		req.Host = cmp.Or(c.host, "localhost:8080")
		c.h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, rec.Code, c.want, rec.Body)
			continue
		}
		path, _, _ := strings.Cut(c.path, "?")
		if err := doc.CheckResponse(c.method, path, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
		}
		if c.path == "/api/marketplace/jobs" && c.want == 200 {
			var out JobsResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Jobs) != 1 {
				t.Fatalf("marketplace jobs: %v %s", err, rec.Body)
			}
			if j := out.Jobs[0]; j.Env != nil || j.Result != nil || j.Command != nil || j.Reward != "0.0015" {
				t.Errorf("public job shows env %v, result %+v, command %q, reward %s", j.Env, j.Result, j.Command, j.Reward)
			}
		}
	}
}

// TestCheckerCatchesDrift makes sure the checker the other tests rely on
// does reject what it should.
func TestCheckerCatchesDrift(t *testing.T) {
	doc := mustDoc(t, marketplaceOpenAPI)
	h := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		name         string
		method, path string
		status       int
		body         string
	}{
		{"undeclared property", "GET", "/health", 200, `{"status":"healthy","service":"s","version":"","time":"2026-03-01T12:00:00Z","extra":1}`},
		{"missing required", "GET", "/health", 200, `{"status":"healthy","service":"s","time":"2026-03-01T12:00:00Z"}`},
		{"bad date-time", "GET", "/health", 200, `{"status":"healthy","service":"s","version":"","time":"yesterday"}`},
		{"undocumented status", "GET", "/health", 400, `{"error":"x","code":"invalid"}`},
		{"4xx as default", "GET", "/api/admin/stats", 409, `{"error":"x","code":"conflict"}`},
		{"empty error", "GET", "/api/admin/stats", 401, `{"error":"","code":"unauthorized"}`},
		{"unknown code", "GET", "/api/admin/stats", 401, `{"error":"x","code":"nope"}`},
		{"integer as number", "GET", "/api/marketplace/agents", 200, `{"agents":[],"count":1.5,"online":0}`},
		{"undocumented path", "GET", "/nope", 200, `{}`},
		{"not JSON", "GET", "/api/admin/stats", 401, `error`},
	} {
		if err := doc.CheckResponse(c.method, c.path, c.status, h, []byte(c.body)); err == nil {
			t.Errorf("%s: the checker accepted it", c.name)
		}
	}
	for _, body := range []string{
		`{"job_type":"test"}`,
		`{"job_type":"test","reward":1,"reward_lamports":1}`,
		`{"job_type":"test","reward":true}`,
		`{"job_type":"test","reward":"1e"}`,
		`{"job_type":"test","reward_lamports":1.5}`,
		`{"job_type":"nope","reward":1}`,
		`{"job_type":"test","reward":1,"x":1}`,
	} {
		if err := doc.CheckRequest("POST", "/api/admin/jobs/create", []byte(body)); err == nil {
			t.Errorf("request %s: the checker accepted it", body)
		}
	}
	if err := doc.CheckRequest("POST", "/api/admin/jobs/create", []byte(`{"job_type":"test","reward":"0.001"}`)); err != nil {
		t.Errorf("a valid request: %v", err)
	}
}
