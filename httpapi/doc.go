// Package httpapi serves node3 over HTTP: the coordinator's marketplace
// API (the seed's REST contract, port 8000), the node's own API (port
// 8080), Prometheus metrics and the OpenAPI document, and a client for the
// marketplace API used by providers, the admin CLI and the end-to-end check.
//
// It depends on the root package and on the small interfaces it declares
// (Marketplace, Node); package node implements them. Errors carry a
// node3.Code, which only this package maps to an HTTP status. Bad input is
// always a 4xx with a JSON body {"error": "..."}; a 5xx means a bug or a
// failing disk, never a bad request.
package httpapi
