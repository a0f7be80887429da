package main

import (
	"net/http"
	"testing"
)

// TestCluster_DeviceAcrossNodes: a device registered through node B
// connects to node A; its owner, connected to B, sees it come online over
// the bus, and revoking it through B closes it on A with 4501.
func TestCluster_DeviceAcrossNodes(t *testing.T) {
	cl := startCluster(t)
	a, b, dirA, dirB := cl.a, cl.b, cl.dirA, cl.dirB
	_, body := b.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	token := body["access_token"].(string)
	nodeA := &deviceEnv{server: a, dir: dirA, token: token}
	nodeB := &deviceEnv{server: b, dir: dirB, token: token}

	id, key := nodeB.register(t, token, "roaming sensor")
	owner := nodeB.mustDial(t, "unhidra.v1", "bearer."+token)
	readType(t, owner, "welcome")
	dev := nodeA.mustDial(t, key)
	readType(t, dev, "welcome")
	readState(t, owner, id, "online")
	writeJSON(t, dev, map[string]any{"type": "heartbeat", "device_id": id, "ts": 10, "free_heap": 2048})
	nodeA.waitDevice(t, token, id, func(d map[string]any) bool { return d["free_heap"] == 2048.0 })

	req, _ := http.NewRequest("DELETE", b.url+"/api/v1/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if st, _ := b.do(t, req); st != 204 {
		t.Fatalf("revoke on B: %d", st)
	}
	if code := closeCode(t, dev); code != 4501 {
		t.Fatalf("device on A after revoking on B closed with %d, want 4501", code)
	}
	readState(t, owner, id, "offline")
}
