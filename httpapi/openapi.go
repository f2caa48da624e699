package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of the API, served at /openapi.json.
//
//go:embed openapi.json
var openAPI []byte

// openapi serves GET /openapi.json.
func (h *handler) openapi(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if _, err := parseParams(r); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
	return nil
}
