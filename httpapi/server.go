package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/node3/node3"
)

// route is one endpoint. The route tables are the single source of the
// routers and are checked against the OpenAPI documents by tests.
type route struct {
	method  string
	path    string // ServeMux pattern path, e.g. /api/jobs/{id}/accept
	summary string
	handle  http.HandlerFunc
}

// router builds a ServeMux from routes, with JSON 404/405 answers and
// per-route request metrics.
type router struct {
	mux      *http.ServeMux
	log      *slog.Logger
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newRouter(log *slog.Logger, reg prometheus.Registerer, server string) *router {
	rt := &router{
		mux: http.NewServeMux(),
		log: log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "node3_http_requests_total",
			Help:        "HTTP requests served, by route and status code.",
			ConstLabels: prometheus.Labels{"server": server},
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "node3_http_request_duration_seconds",
			Help:        "HTTP request latency by route.",
			ConstLabels: prometheus.Labels{"server": server},
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(rt.requests, rt.latency)
	}
	rt.mux.HandleFunc("/", rt.miss)
	return rt
}

func (rt *router) add(routes []route) {
	for _, r := range routes {
		pattern := r.method + " " + r.path
		name := pattern
		h := r.handle
		rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			h(sw, req)
			rt.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
			rt.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		})
	}
}

// miss answers requests no route took: 405 when the path exists under
// another method, else 404; JSON either way.
func (rt *router) miss(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pat := rt.mux.Handler(r2); pat != "/" && pat != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		for _, m := range allow {
			w.Header().Add("Allow", m)
		}
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: r.Method + " is not allowed on " + trunc(r.URL.Path, 100), Code: string(node3.CodeInvalid)})
		return
	}
	notFound(w, r)
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			rt.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error", Code: string(node3.CodeInternal)})
		}
	}()
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rt.mux.ServeHTTP(w, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func metricsHandler(g prometheus.Gatherer) http.HandlerFunc {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	return h.ServeHTTP
}

// keyMatches compares a presented secret with the expected one in
// constant time (over their hashes, so lengths leak nothing either).
func keyMatches(presented, expected string) bool {
	if presented == "" || expected == "" {
		return false
	}
	a := sha256.Sum256([]byte(presented))
	b := sha256.Sum256([]byte(expected))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// queryInt parses an optional integer query parameter within [min, max].
func queryInt(r *http.Request, name string, def, min, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, node3.Errorf(node3.CodeInvalid, "query parameter %s must be an integer between %d and %d", name, min, max)
	}
	return n, nil
}
