package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// backup serves POST /v1/admin/backup: an admin's request that the server
// write a consistent copy of its store into the folder "to" of the JSON
// body, a path on the server that must not exist or be empty
// (activitystore.Store.Backup). Writes go on meanwhile.
func (h *handler) backup(w http.ResponseWriter, r *http.Request, who Principal) error {
	if _, err := parseParams(r); err != nil {
		return err
	}
	if !who.Admin {
		return forbidden("", "only an admin may back up the store")
	}
	// A JSON body only: a browser sends one across sites only after asking
	// the server, which says nothing, so no web page can start a backup.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, msg: "the body must be JSON, with Content-Type application/json"}
	}
	var req struct {
		To string `json:"to"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badParam("to", "the body must be {\"to\": \"FOLDER\"}: %v", err)
	}
	if req.To == "" || !filepath.IsAbs(req.To) {
		return badParam("to", "want an absolute path on the server, got %s", clipped(req.To))
	}
	if names, err := os.ReadDir(req.To); err == nil && len(names) > 0 {
		return &apiError{status: http.StatusConflict, field: "to", msg: fmt.Sprintf("%s is not empty: a backup goes into a new or empty folder", clipped(req.To))}
	}
	start := time.Now()
	if err := h.s.Backup(r.Context(), req.To); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"dir": req.To, "seconds": time.Since(start).Seconds()})
	return nil
}
