package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPICoversTheRoutes checks that every route the handler serves is
// in the OpenAPI document, and every operation of the document is served.
func TestOpenAPICoversTheRoutes(t *testing.T) {
	s := openStore(t, nil)
	h := newHandler(s, Options{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	c := serveHandler(t, h)
	status, body := c.do(http.MethodGet, "/openapi.json", "")
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)

	var served, documented []string
	for _, path := range h.paths {
		for _, m := range h.methods[path] {
			if m == http.MethodHead {
				continue // with every GET
			}
			p := strings.TrimSuffix(path, "{$}")
			served = append(served, strings.ToLower(m)+" "+p)
		}
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, m+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	require.Equal(t, served, documented)
}
