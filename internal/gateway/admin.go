package gateway

import (
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// ConnInfo describes a live connection for administrators.
type ConnInfo struct {
	Session      string    `json:"session"`
	Kind         string    `json:"kind"`
	IdentityID   string    `json:"identity_id"`
	IdentityName string    `json:"identity_name"`
	RemoteAddr   string    `json:"remote_addr"`
	UserAgent    string    `json:"user_agent,omitempty"`
	ConnectedAt  time.Time `json:"connected_at"`
	LastActivity time.Time `json:"last_activity"`
	BytesIn      uint64    `json:"bytes_in"`
	BytesOut     uint64    `json:"bytes_out"`
	MessagesIn   uint64    `json:"messages_in"`
	MessagesOut  uint64    `json:"messages_out"`
	QueuedBytes  int       `json:"queued_bytes"`
}

// Connections lists live connections (only upgraded ones: the transport
// registers a connection when it is served and forgets it when it closes).
func (g *Gateway) Connections() []ConnInfo {
	var out []ConnInfo
	g.engine.Range(func(wc *ws.Conn) bool {
		c, ok := wc.Value().(*Client)
		if !ok {
			return true
		}
		st := wc.Stats()
		last := st.LastReceived
		if last.Before(st.ConnectedAt) {
			last = st.ConnectedAt
		}
		out = append(out, ConnInfo{
			Session: c.session, Kind: c.ident.Kind, IdentityID: c.ident.ID, IdentityName: c.ident.Name,
			RemoteAddr: wc.RemoteAddr().String(), UserAgent: c.userAgent,
			ConnectedAt: st.ConnectedAt.UTC(), LastActivity: last.UTC(),
			BytesIn: st.BytesIn, BytesOut: st.BytesOut, MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut,
			QueuedBytes: st.QueuedBytes,
		})
		return true
	})
	return out
}
