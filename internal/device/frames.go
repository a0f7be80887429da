package device

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Limits on device input.
const (
	MaxUptime        = 1 << 32 // seconds (136 years): anything above is garbage
	MaxFreeHeap      = 1 << 40 // bytes: far above any microcontroller
	MaxReadingsBytes = 4096
	MaxReadings      = 64
	MaxReadingKeyLen = 64
	MaxReadingStrLen = 256
	MaxResultBytes   = 8192
	MaxAckErrorLen   = 1024
)

// errWrongDevice answers a heartbeat or telemetry frame naming another
// device (error code wrong_device).
var errWrongDevice = unhidra.Errorf(protocol.ErrWrongDevice, "device_id is not the authenticated device.")

// parseHeartbeat validates the seed firmware's heartbeat
// {"type":"heartbeat","device_id":"dev_…","ts":<s since boot>,"free_heap":<bytes>}
// ("timestamp" is accepted for "ts") for the authenticated device.
// device_id must be the device's ID, exactly; names are not accepted,
// because they are neither unique nor stable.
func parseHeartbeat(deviceID string, e *protocol.Envelope) (Heartbeat, error) {
	switch {
	case e.DeviceID == "":
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "device_id is required.")
	case e.DeviceID != deviceID:
		return Heartbeat{}, errWrongDevice
	}
	ts := e.TS
	if ts == nil {
		ts = e.Timestamp
	} else if e.Timestamp != nil && *e.Timestamp != *ts {
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "ts and timestamp disagree.")
	}
	switch {
	case ts == nil:
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "ts (seconds since boot) is required.")
	case math.IsNaN(*ts) || *ts < 0 || *ts > MaxUptime:
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "ts must be seconds since boot, 0 to %d.", int64(MaxUptime))
	case e.FreeHeap == nil:
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "free_heap is required.")
	}
	fh := *e.FreeHeap
	if math.IsNaN(fh) || fh < 0 || fh > MaxFreeHeap || fh != math.Trunc(fh) {
		return Heartbeat{}, unhidra.Errorf(protocol.ErrInvalid, "free_heap must be a whole number of bytes, 0 to %d.", int64(MaxFreeHeap))
	}
	return Heartbeat{Uptime: *ts, FreeHeap: int64(fh)}, nil
}

// ReceiveHeartbeat validates and applies a heartbeat frame of the
// connected device deviceID.
func (s *Service) ReceiveHeartbeat(deviceID string, e *protocol.Envelope) error {
	hb, err := parseHeartbeat(deviceID, e)
	if err != nil {
		return err
	}
	if !s.heartbeat(deviceID, hb) {
		return unhidra.Errorf(protocol.ErrUnavailable, "The connection is not registered yet; retry.")
	}
	return nil
}

// parseReadings validates a telemetry object (numbers, strings and
// booleans under short keys) and returns it compacted.
func parseReadings(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return nil, unhidra.Errorf(protocol.ErrInvalid, "readings is required.")
	case len(raw) > MaxReadingsBytes:
		return nil, unhidra.Errorf(protocol.ErrTooLarge, "readings must be at most %d bytes.", MaxReadingsBytes)
	case raw[0] != '{':
		return nil, unhidra.Errorf(protocol.ErrInvalid, "readings must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "readings must be a JSON object.")
	}
	if len(m) == 0 || len(m) > MaxReadings {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "readings must have 1 to %d entries.", MaxReadings)
	}
	for k, v := range m {
		if k == "" || len(k) > MaxReadingKeyLen || !utf8.ValidString(k) {
			return nil, unhidra.Errorf(protocol.ErrInvalid, "reading names must be 1 to %d bytes.", MaxReadingKeyLen)
		}
		switch v := v.(type) {
		case json.Number:
			if f, err := strconv.ParseFloat(string(v), 64); err != nil || math.IsInf(f, 0) {
				return nil, unhidra.Errorf(protocol.ErrInvalid, "reading %q is out of range.", k)
			}
		case string:
			if len(v) > MaxReadingStrLen {
				return nil, unhidra.Errorf(protocol.ErrTooLarge, "reading %q is longer than %d bytes.", k, MaxReadingStrLen)
			}
		case bool:
		default:
			return nil, unhidra.Errorf(protocol.ErrInvalid, "reading %q must be a number, string or boolean.", k)
		}
	}
	// Re-encoded compactly without HTML escaping, so what is stored is no
	// larger than the limit that was checked.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "readings must be a JSON object.")
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) > MaxReadingsBytes {
		return nil, unhidra.Errorf(protocol.ErrTooLarge, "readings must be at most %d bytes.", MaxReadingsBytes)
	}
	return out, nil
}

// ReceiveTelemetry validates and queues a telemetry frame of the
// connected device deviceID.
func (s *Service) ReceiveTelemetry(deviceID string, e *protocol.Envelope) error {
	if e.DeviceID != "" && e.DeviceID != deviceID {
		return errWrongDevice
	}
	readings, err := parseReadings(e.Readings)
	if err != nil {
		return err
	}
	if !s.telemetry(deviceID, readings) {
		return unhidra.Errorf(protocol.ErrUnavailable, "Telemetry is arriving faster than it can be stored; slow down.")
	}
	return nil
}

// Expecting reports whether the device's connection c awaits an answer to
// command id (such acks are not charged to the frame rate limit).
func (s *Service) Expecting(deviceID string, c Conn, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.live[deviceID]
	if d == nil || d.conn != c {
		return false
	}
	_, ok := d.outstanding[id]
	return ok
}

// answered removes a command from its device's window and reports whether
// it was there.
func (s *Service) answered(deviceID, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.live[deviceID]
	if d == nil {
		return false
	}
	_, ok := d.outstanding[id]
	delete(d.outstanding, id)
	return ok
}

// ReceiveAck records a device's answer to one of its commands,
// {"type":"ack","id":"cmd_…","ok"?,"result"?,"error"?,"truncated"?}, and refills the
// device's command window. Every answer ends the command: a result larger
// than MaxResultBytes fails it (with the reason) instead of leaving it
// delivered, and a long error text is cut to MaxAckErrorLen.
func (s *Service) ReceiveAck(ctx context.Context, deviceID string, e *protocol.Envelope) error {
	if e.ID == "" {
		return unhidra.Errorf(protocol.ErrInvalid, "id (the command id) is required.")
	}
	u := store.CommandUpdate{From: []string{unhidra.CommandQueued, unhidra.CommandDelivered}, Status: unhidra.CommandAcked,
		At: s.cfg.Now(), Result: compact(e.Result), Error: cutUTF8(e.Error, MaxAckErrorLen)}
	if (e.OK != nil && !*e.OK) || e.Error != "" {
		u.Status = unhidra.CommandFailed
	}
	if len(u.Result) > MaxResultBytes {
		u.Status, u.Result = unhidra.CommandFailed, nil
		u.Error = fmt.Sprintf("result too large: %d bytes, the limit is %d (told in welcome)", len(e.Result), MaxResultBytes)
	}
	cmd, err := s.store.UpdateCommand(ctx, deviceID, e.ID, u)
	if err != nil {
		if unhidra.ErrorCode(err) == protocol.ErrConflict && s.answered(deviceID, e.ID) {
			s.pump(ctx, deviceID, false) // it ended otherwise (expired): its slot is free
		}
		return err
	}
	s.commandStatus(ctx, cmd)
	if s.answered(deviceID, e.ID) {
		s.pump(ctx, deviceID, false)
	}
	return nil
}

// cutUTF8 returns at most n bytes of s, not splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func compact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return nil
	}
	return b.Bytes()
}
