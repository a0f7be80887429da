package api

import "net/http"

// addRoutes lists every route the API itself serves; other parts of the
// server mount theirs through Deps.Mount.
func addRoutes(mux *http.ServeMux, d Deps) {
	h := d.helpers()
	user, admin := h.RequireUser, h.RequireAdmin

	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(d))
	mux.Handle("GET /.well-known/jwks.json", handleJWKS(d.Accounts))
	mux.Handle("GET /api/v1/openapi.json", handleOpenAPI())
	if d.Metrics != nil {
		mux.Handle("GET /metrics", handleMetrics(d))
	}

	mux.Handle("POST /api/v1/auth/register", handleRegister(d))
	mux.Handle("POST /api/v1/auth/login", handleLogin(d))
	mux.Handle("POST /api/v1/auth/refresh", handleRefresh(d))
	mux.Handle("POST /api/v1/auth/logout", user(handleLogout(d)))
	mux.Handle("POST /api/v1/auth/logout-everywhere", user(handleLogoutEverywhere(d)))
	mux.Handle("GET /api/v1/auth/bootstrap", handleBootstrapStatus(d))
	mux.Handle("POST /api/v1/auth/bootstrap", handleBootstrap(d))

	mux.Handle("GET /api/v1/me", user(handleMe()))
	mux.Handle("PUT /api/v1/me/password", user(handleChangePassword(d)))

	mux.Handle("GET /api/v1/admin/users", admin(handleAdminUsers(d)))
	mux.Handle("POST /api/v1/admin/users", admin(handleAdminCreateUser(d)))
	mux.Handle("POST /api/v1/admin/users/{id}/disable", admin(handleAdminSetDisabled(d, true)))
	mux.Handle("POST /api/v1/admin/users/{id}/enable", admin(handleAdminSetDisabled(d, false)))
	mux.Handle("PUT /api/v1/admin/users/{id}/password", admin(handleAdminResetPassword(d)))
	mux.Handle("PUT /api/v1/admin/users/{id}/role", admin(handleAdminSetRole(d)))
	mux.Handle("GET /api/v1/admin/audit", admin(handleAdminAudit(d)))
	mux.Handle("POST /api/v1/admin/signing-keys/rotate", admin(handleAdminRotateKeys(d)))
	mux.Handle("POST /api/v1/admin/debug/free-memory", admin(handleFreeMemory()))

	if d.ML != nil {
		mux.Handle("POST /api/v1/ml/infer", user(handleInfer(d)))
		mux.Handle("GET /api/v1/ml/models", user(handleModels(d)))
		mux.Handle("GET /api/v1/admin/ml/workers", admin(handleMLWorkers(d)))
	}
	for _, mount := range d.Mount {
		mount(mux, h)
	}
	// Anything else under /api is a JSON 404, not the web UI's HTML.
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Error(w, r, errNoRoute)
	}))
}
