package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of every HTTP route of the server
// (this package's and the mounted ones), kept in the repository as
// openapi.json and served at /api/v1/openapi.json. Tests check it against
// the registered routes both ways and lint it with a third-party validator.
//
//go:embed openapi.json
var OpenAPI []byte

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(OpenAPI)
	})
}
