package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// consoleFiles are the web console's files: plain HTML, CSS and JavaScript
// with no dependency and no build step.
//
//go:embed ui
var consoleFiles embed.FS

// console serves the web console at /ui/. The page itself is public and
// holds no data: every view reads the API with the token typed in, kept
// for the tab only, so it sees what that principal may.
func console() http.Handler {
	sub, err := fs.Sub(consoleFiles, "ui")
	if err != nil {
		panic(err) // the embedded folder is part of the build
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
