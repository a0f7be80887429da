package main

import (
	"net/http"
	"testing"

	"github.com/unhidra/unhidra/protocol"
)

// A channel that follows a device gets its state changes live: here a
// member who does not own the device sees it come online in the channel.
func TestDevices_ChannelFollowsDevice(t *testing.T) {
	e := startDeviceServer(t)
	owner := e.userToken(t, "owner1")
	watcher := e.userToken(t, "watcher")
	outsider := e.userToken(t, "outsider")
	id, key := e.register(t, owner, "boiler")

	st, body := e.post(t, "/api/v1/channels", owner, map[string]any{"name": "plant-room", "private": true})
	if st != 201 {
		t.Fatalf("create channel: %d %v", st, body)
	}
	ch := body["id"].(string)
	if st, body := e.post(t, "/api/v1/channels/"+ch+"/members", owner, map[string]string{"member": "watcher"}); st != 201 {
		t.Fatalf("invite: %d %v", st, body)
	}
	// Only someone who sees the device and is in the channel may link them.
	if st, _ := e.post(t, "/api/v1/devices/"+id+"/channels", outsider, map[string]string{"channel": ch}); st != 404 {
		t.Fatalf("outsider linking someone's device: %d", st)
	}
	if st, _ := e.post(t, "/api/v1/devices/"+id+"/channels", owner, map[string]string{"channel": "chn_nope"}); st != 404 {
		t.Fatalf("following into an unknown channel: %d", st)
	}
	if st, body := e.post(t, "/api/v1/devices/"+id+"/channels", owner, map[string]string{"channel": ch}); st != 204 {
		t.Fatalf("follow: %d %v", st, body)
	}
	if st, body := e.get(t, "/api/v1/devices/"+id+"/channels", owner); st != 200 || len(body["channels"].([]any)) != 1 {
		t.Fatalf("list followers: %d %v", st, body)
	}

	w := e.mustDial(t, protocol.Subprotocol, "bearer."+watcher)
	// The connection follows its conversations by the time the presence
	// snapshot comes; the device's first state frame must not come sooner.
	readType(t, w, "presence_snapshot")
	dev := e.mustDial(t, key)
	readType(t, dev, "welcome")
	writeJSON(t, dev, map[string]any{"type": "heartbeat", "device_id": id, "ts": 12, "free_heap": 150000})
	m := readState(t, w, id, "online")
	if m["channel"] != ch {
		t.Fatalf("state frame for the watcher lacks its channel: %v", m)
	}

	if st, _ := e.do(t, mustReq(t, "DELETE", e.url+"/api/v1/devices/"+id+"/channels/"+ch, owner)); st != 204 {
		t.Fatalf("unfollow: %d", st)
	}
}

func mustReq(t *testing.T, method, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// A device is a channel member like a person: its owner adds it, it
// receives the channel's messages and can post to it.
func TestDevices_DeviceAsChannelMember(t *testing.T) {
	e := startDeviceServer(t)
	owner := e.userToken(t, "owner2")
	other := e.userToken(t, "other2")
	id, key := e.register(t, owner, "relay")
	st, body := e.post(t, "/api/v1/channels", owner, map[string]any{"name": "relays", "private": false})
	if st != 201 {
		t.Fatalf("create channel: %d %v", st, body)
	}
	ch := body["id"].(string)
	// Someone else cannot add the owner's device (it looks like no device).
	e.post(t, "/api/v1/channels/"+ch+"/join", other, nil)
	if st, _ := e.post(t, "/api/v1/channels/"+ch+"/members", other, map[string]string{"member": id}); st != 404 {
		t.Fatalf("adding someone else's device: %d", st)
	}
	if st, body := e.post(t, "/api/v1/channels/"+ch+"/members", owner, map[string]string{"member": id}); st != 201 {
		t.Fatalf("owner adds the device: %d %v", st, body)
	}
	dev := e.mustDial(t, key)
	readType(t, dev, "welcome")
	if st, body := e.post(t, "/api/v1/channels/"+ch+"/messages", owner, map[string]string{"body": "relay 1 on", "id": "m1"}); st != 201 {
		t.Fatalf("post: %d %v", st, body)
	}
	m := readType(t, dev, "message")
	if m["body"] != "relay 1 on" || m["channel"] != ch {
		t.Fatalf("device received %v", m)
	}
	writeJSON(t, dev, map[string]any{"type": "send", "id": "d1", "channel": ch, "body": "relay 1 is on"})
	ack := readType(t, dev, "ack")
	if ack["id"] != "d1" || ack["seq"] == nil {
		t.Fatalf("device's post: %v", ack)
	}
}
