package httpapi

// Exports for the external tests (package httpapi_test).

// APIDoc is a parsed OpenAPI document that checks requests and responses.
type APIDoc = apiDoc

// MarketplaceDoc parses the embedded marketplace document.
func MarketplaceDoc() (*APIDoc, error) { return parseDoc(marketplaceOpenAPI) }

// IdempotencyKey reads the Idempotency-Key header.
var IdempotencyKey = idempotencyKey
