package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/node3/node3"
)

// statusOf maps an error code to an HTTP status.
func statusOf(code node3.Code) int {
	switch code {
	case node3.CodeInvalid:
		return http.StatusBadRequest
	case node3.CodeNotFound:
		return http.StatusNotFound
	case node3.CodeConflict:
		return http.StatusConflict
	case node3.CodeUnprocessable:
		return http.StatusUnprocessableEntity
	case node3.CodeUnauthorized:
		return http.StatusUnauthorized
	case node3.CodeForbidden:
		return http.StatusForbidden
	case node3.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case node3.CodeUnavailable:
		return http.StatusServiceUnavailable
	case node3.CodeRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// codeOf maps an HTTP status back to an error code (for the client).
func codeOf(status int) node3.Code {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return node3.CodeInvalid
	case http.StatusUnprocessableEntity:
		return node3.CodeUnprocessable
	case http.StatusNotFound:
		return node3.CodeNotFound
	case http.StatusConflict:
		return node3.CodeConflict
	case http.StatusUnauthorized:
		return node3.CodeUnauthorized
	case http.StatusForbidden:
		return node3.CodeForbidden
	case http.StatusRequestEntityTooLarge:
		return node3.CodeTooLarge
	case http.StatusTooManyRequests:
		return node3.CodeRateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return node3.CodeUnavailable
	}
	return node3.CodeInternal
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	code := node3.ErrorCode(err)
	status := statusOf(code)
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{Error: node3.ErrorMessage(err), Code: string(code)})
}

// Body size limits.
const (
	maxBody      = 64 << 10  // most requests
	maxBodyLarge = 256 << 10 // reports carrying output
)

// decode reads exactly one JSON object from the request body into v:
// unknown fields, wrong types, trailing data and oversized bodies are
// CodeInvalid / CodeTooLarge errors that say what was wrong. An empty body
// is allowed when optional is true (v keeps its zero value). Field names
// must match exactly: encoding/json alone would take "Wallet_Address" for
// wallet_address, and the last of "reward" and "REWARD".
func decode(w http.ResponseWriter, r *http.Request, limit int64, optional bool, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// Media types are case-insensitive; parameters (charset) may follow.
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return node3.Errorf(node3.CodeInvalid, "Content-Type must be application/json, not %q", trunc(ct, 64))
		}
	}
	var raw bytes.Buffer // what the decoder read, for exactKeys
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(io.TeeReader(body, &raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && optional {
			return nil
		}
		return decodeError(err, limit)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err, limit)
		}
		return node3.Errorf(node3.CodeInvalid, "request body must hold exactly one JSON object")
	}
	return exactKeys(raw.Bytes(), reflect.TypeOf(v))
}

// exactKeys checks the object keys of a JSON document that decoded into a
// value of type t: each must be, exactly, the JSON name of a field of the
// struct it lands in, and appear once. Values bound for maps, interfaces
// and json.RawMessage are not looked into.
func exactKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(t reflect.Type) error
	walk = func(t reflect.Type) error {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t != nil && reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
			t = nil // json.RawMessage and the like take what they get
		}
		tok, err := dec.Token()
		if err != nil {
			return node3.Errorf(node3.CodeInvalid, "request body is not valid JSON")
		}
		switch tok {
		case json.Delim('{'):
			var fields map[string]reflect.Type
			if t != nil && t.Kind() == reflect.Struct {
				fields = make(map[string]reflect.Type)
				jsonFieldTypes(t, fields)
			}
			seen := make(map[string]bool)
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return node3.Errorf(node3.CodeInvalid, "request body is not valid JSON")
				}
				key, _ := tok.(string)
				if seen[key] {
					return node3.Errorf(node3.CodeInvalid, "field %q appears twice", trunc(key, 80))
				}
				seen[key] = true
				var next reflect.Type
				switch {
				case fields != nil:
					ft, ok := fields[key]
					if !ok {
						return node3.Errorf(node3.CodeInvalid, "unknown field %q", trunc(key, 80))
					}
					next = ft
				case t != nil && t.Kind() == reflect.Map:
					next = t.Elem()
				}
				if err := walk(next); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
		case json.Delim('['):
			var elem reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				elem = t.Elem()
			}
			for dec.More() {
				if err := walk(elem); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
		}
		if err != nil {
			return node3.Errorf(node3.CodeInvalid, "request body is not valid JSON")
		}
		return nil
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		// encoding/json takes null for an empty object.
		return node3.Errorf(node3.CodeInvalid, "request body must be a JSON object")
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	return walk(t)
}

// jsonFieldTypes adds the JSON names of struct type t's fields (those of
// embedded structs included) with their types to out.
func jsonFieldTypes(t reflect.Type, out map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if ft := f.Type; f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFieldTypes(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}

func decodeError(err error, limit int64) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return node3.Errorf(node3.CodeTooLarge, "request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return node3.Errorf(node3.CodeInvalid, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return node3.Errorf(node3.CodeInvalid, "request body is not valid JSON: unexpected end")
	case errors.As(err, &syn):
		return node3.Errorf(node3.CodeInvalid, "request body is not valid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return node3.Errorf(node3.CodeInvalid, "field %q must be %s, not %s", typ.Field, typeName(typ.Type.String()), typ.Value)
		}
		return node3.Errorf(node3.CodeInvalid, "request body must be a JSON object, not %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return node3.Errorf(node3.CodeInvalid, "unknown field %s", trunc(strings.TrimPrefix(err.Error(), "json: unknown field "), 80))
	}
	return node3.Errorf(node3.CodeInvalid, "request body is not valid: %s", trunc(err.Error(), 120))
}

func typeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"), goType == "json.Number":
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	}
	return "an object"
}

func trunc(s string, n int) string { return node3.Truncate(s, n) }

// bearer extracts an API key from Authorization: Bearer or X-API-Key.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// notFound and methodNotAllowed keep every miss in JSON.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no route for %s %s", r.Method, trunc(r.URL.Path, 100)), Code: string(node3.CodeNotFound)})
}

// idempotencyKey reads the Idempotency-Key header: a structured-field
// string as the IETF draft has it ("…", with \" and \\ escapes) or, as many clients
// send it, the bare key. Absent: "". More than one, or a malformed one, is
// CodeInvalid.
func idempotencyKey(h http.Header) (string, error) {
	vs := h.Values("Idempotency-Key")
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", node3.Errorf(node3.CodeInvalid, "give one Idempotency-Key header, not %d", len(vs))
	}
	v := strings.TrimSpace(vs[0])
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case closed:
				return "", node3.Errorf(node3.CodeInvalid, "Idempotency-Key has text after its closing quote")
			case c == '\\':
				if i+1 == len(v) || (v[i+1] != '"' && v[i+1] != '\\') {
					return "", node3.Errorf(node3.CodeInvalid, `Idempotency-Key: only \" and \\ may be escaped`)
				}
				i++
				b.WriteByte(v[i])
			case c == '"':
				closed = true
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", node3.Errorf(node3.CodeInvalid, "Idempotency-Key has no closing quote")
		}
		v = b.String()
	}
	if v == "" {
		return "", node3.Errorf(node3.CodeInvalid, "Idempotency-Key is empty")
	}
	return v, nil // the ledger checks its length and characters
}
