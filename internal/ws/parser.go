package ws

import (
	"encoding/binary"
	"unicode/utf8"
)

// parserSink receives what the parser decodes. Payload slices are valid only
// during the call: they may point into the caller's read buffer.
type parserSink interface {
	// onMessage receives a complete, reassembled data message.
	onMessage(text bool, payload []byte)
	onPing(payload []byte)
	onPong(payload []byte)
	// onClose receives a validated close frame; code is CloseNoStatus when
	// the frame had no payload. The parser ignores all input after it.
	onClose(code int, reason string)
}

// protocolError is a reason to fail the connection, with the close code to
// send.
type protocolError struct {
	code   int
	reason string
}

func (e *protocolError) Error() string { return e.reason }

var (
	errReservedBits       = &protocolError{CloseProtocolError, "reserved bits set"}
	errReservedOpcode     = &protocolError{CloseProtocolError, "reserved opcode"}
	errFragmentedControl  = &protocolError{CloseProtocolError, "fragmented control frame"}
	errControlTooLong     = &protocolError{CloseProtocolError, "control frame payload over 125 bytes"}
	errUnmasked           = &protocolError{CloseProtocolError, "unmasked client frame"}
	errNoMessageToProlong = &protocolError{CloseProtocolError, "continuation frame without a message"}
	errMessageUnfinished  = &protocolError{CloseProtocolError, "new message before the previous one ended"}
	errLengthMSB          = &protocolError{CloseProtocolError, "payload length has its top bit set"}
	errMessageTooBig      = &protocolError{CloseMessageTooBig, "message too big"}
	errInvalidUTF8        = &protocolError{CloseInvalidPayload, "invalid UTF-8 in text message"}
	errCloseLength        = &protocolError{CloseProtocolError, "close payload of 1 byte"}
	errCloseCode          = &protocolError{CloseProtocolError, "invalid close code"}
	errCloseReasonUTF8    = &protocolError{CloseInvalidPayload, "invalid UTF-8 in close reason"}
)

// parser is an incremental decoder of client-to-server frames (RFC 6455 §5).
// It accepts input in chunks of any size, unmasks in place, reassembles
// fragmented messages, validates UTF-8 of text messages and close reasons,
// and enforces the maximum message size before buffering any payload.
//
// Between messages its state is a few dozen bytes: payload buffers exist only
// while a message or control frame is split across chunks (an unfragmented
// message that arrives within one chunk is handed over without a copy), and
// they are dropped as soon as it is delivered.
//
// It is not safe for concurrent use; the connection's read side owns it.
type parser struct {
	maxMessage int64

	// Header bytes of the current frame while the header itself is split
	// across chunks.
	hdr    [maxHeaderLen]byte
	hdrLen uint8

	// The frame whose payload is being read (valid while inFrame).
	inFrame   bool
	frameFin  bool
	frameOp   Opcode
	maskPos   uint8
	mask      [4]byte
	remaining int64 // payload bytes of this frame still to come

	// The data message in progress (msgOp != 0): its opcode, the payload
	// so far (nil until a frame is split or a message fragmented), its
	// length, and the UTF-8 state for text.
	msgOp  Opcode
	msgLen int64
	msg    []byte
	utf8   utf8Validator

	// Payload of a control frame split across chunks.
	ctl []byte

	frames uint64         // complete frames decoded, for idle accounting
	units  uint64         // complete messages, and control frames outside one
	err    *protocolError // sticky
	closed bool           // a close frame was received
}

func newParser(maxMessage int64) parser { return parser{maxMessage: maxMessage} }

// partial reports whether a frame or a fragmented message is partly
// received.
func (p *parser) partial() bool {
	return p.hdrLen > 0 || p.inFrame || p.msgOp != 0
}

// release drops the payload buffers.
func (p *parser) release() {
	putMsgBuf(p.msg)
	p.msg, p.ctl = nil, nil
}

// feed decodes b, calling sink for each complete message and control frame.
// It unmasks b in place. After a protocol error or a close frame it ignores
// all further input; the error is returned by the call that found it and by
// every later call.
func (p *parser) feed(b []byte, sink parserSink) *protocolError {
	for len(b) > 0 && p.err == nil && !p.closed {
		if !p.inFrame {
			n, err := p.readHeader(b)
			if err != nil {
				p.fail(err)
				break
			}
			b = b[n:]
			if !p.inFrame {
				break // header incomplete; its bytes are saved
			}
			if p.remaining == 0 || (int64(len(b)) >= p.remaining &&
				(p.frameOp.isControl() || (p.frameFin && p.msg == nil))) {
				// The whole payload is in b and nothing of the message is
				// buffered: hand it over without copying.
				n := int(p.remaining)
				maskBytes(p.mask, 0, b[:n])
				p.remaining = 0
				p.completeFrame(b[:n], sink)
				b = b[n:]
				continue
			}
		}
		n := int64(len(b))
		if n > p.remaining {
			n = p.remaining
		}
		chunk := b[:n]
		b = b[n:]
		p.maskPos = uint8(maskBytes(p.mask, int(p.maskPos), chunk))
		p.remaining -= n
		if p.frameOp.isControl() {
			if p.ctl == nil {
				p.ctl = make([]byte, 0, MaxControlPayload)
			}
			p.ctl = append(p.ctl, chunk...)
			if p.remaining == 0 {
				ctl := p.ctl
				p.ctl = nil
				p.completeFrame(ctl, sink)
			}
			continue
		}
		if p.msgOp == OpText && !p.utf8.write(chunk) {
			p.fail(errInvalidUTF8)
			break
		}
		p.appendMsg(chunk)
		if p.remaining == 0 {
			p.completeFrame(nil, sink)
		}
	}
	return p.err
}

func (p *parser) fail(err *protocolError) {
	p.err = err
	p.release()
}

// readHeader consumes header bytes from b. It returns how many it used; when
// the header is complete it validates it and starts the frame (p.inFrame).
// Frame-level checks happen as soon as the first two bytes are known, so an
// unmasked or malformed frame fails without waiting for more input.
func (p *parser) readHeader(b []byte) (int, *protocolError) {
	var hdr []byte
	used := 0
	if p.hdrLen == 0 && len(b) >= 2 && len(b) >= headerLen(b[1]) {
		hdr = b[:headerLen(b[1])] // fast path: the whole header is in b
		used = len(hdr)
	} else {
		// Accumulate: first the two fixed bytes, then the rest once the
		// length of the rest is known.
		for used < len(b) {
			p.hdr[p.hdrLen] = b[used]
			p.hdrLen++
			used++
			if p.hdrLen == 2 {
				if err := p.checkFixed(p.hdr[0], p.hdr[1]); err != nil {
					return used, err
				}
			}
			if p.hdrLen >= 2 && int(p.hdrLen) == headerLen(p.hdr[1]) {
				break
			}
		}
		if p.hdrLen < 2 || int(p.hdrLen) < headerLen(p.hdr[1]) {
			return used, nil
		}
		hdr = p.hdr[:p.hdrLen]
		p.hdrLen = 0
	}
	if err := p.checkFixed(hdr[0], hdr[1]); err != nil {
		return used, err
	}
	return used, p.startFrame(hdr)
}

// headerLen returns the full header length implied by the second header
// byte (client frames are masked, so the 4 key bytes are always counted).
func headerLen(b1 byte) int {
	switch b1 & 0x7F {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// checkFixed validates what the two fixed header bytes alone determine.
func (p *parser) checkFixed(b0, b1 byte) *protocolError {
	if b0&0x70 != 0 {
		return errReservedBits // no extension is ever negotiated
	}
	op := Opcode(b0 & 0x0F)
	fin := b0&0x80 != 0
	switch op {
	case OpContinuation:
		if p.msgOp == 0 {
			return errNoMessageToProlong
		}
	case OpText, OpBinary:
		if p.msgOp != 0 {
			return errMessageUnfinished
		}
	case OpClose, OpPing, OpPong:
		if !fin {
			return errFragmentedControl
		}
		if b1&0x7F > MaxControlPayload {
			return errControlTooLong
		}
	default:
		return errReservedOpcode
	}
	if b1&0x80 == 0 {
		return errUnmasked
	}
	return nil
}

// startFrame decodes a complete, fixed-byte-checked header.
func (p *parser) startFrame(hdr []byte) *protocolError {
	op := Opcode(hdr[0] & 0x0F)
	fin := hdr[0]&0x80 != 0
	var length uint64
	rest := hdr[2:]
	switch hdr[1] & 0x7F {
	case 126:
		length = uint64(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	case 127:
		length = binary.BigEndian.Uint64(rest)
		if length>>63 != 0 {
			return errLengthMSB
		}
		rest = rest[8:]
	default:
		length = uint64(hdr[1] & 0x7F)
	}
	if !op.isControl() {
		if uint64(p.msgLen)+length > uint64(p.maxMessage) {
			return errMessageTooBig // before a single payload byte is buffered
		}
		if op != OpContinuation {
			p.msgOp = op
			p.msgLen = 0
			p.utf8.reset()
		}
	}
	copy(p.mask[:], rest[:4])
	p.inFrame = true
	p.frameFin = fin
	p.frameOp = op
	p.maskPos = 0
	p.remaining = int64(length)
	return nil
}

// appendMsg adds unmasked payload to the message in progress, growing the
// buffer geometrically but never beyond what the declared frame length and
// the message size limit allow.
func (p *parser) appendMsg(chunk []byte) {
	need := len(p.msg) + len(chunk)
	if need > cap(p.msg) {
		// Never beyond the size limit, nor, on the last frame, beyond what
		// the frame still promises.
		limit := p.maxMessage
		if p.frameFin {
			limit = int64(need) + p.remaining
		}
		c := 2 * cap(p.msg)
		if c < 512 {
			c = 512
		}
		if int64(c) > limit {
			c = int(limit)
		}
		if c < need {
			c = need
		}
		grown := append(getMsgBuf(c, int(p.maxMessage)), p.msg...)
		putMsgBuf(p.msg)
		p.msg = grown
	}
	p.msg = append(p.msg, chunk...)
	p.msgLen += int64(len(chunk))
}

// completeFrame finishes the current frame. direct is the frame's payload
// when it was not buffered (a control frame, an empty frame, or the whole
// last frame of a message of which nothing is buffered); otherwise direct is
// nil and the payload is already in p.msg.
func (p *parser) completeFrame(direct []byte, sink parserSink) {
	p.inFrame = false
	p.frames++
	if p.frameOp.isControl() && p.msgOp == 0 {
		p.units++
	}
	switch p.frameOp {
	case OpPing:
		sink.onPing(direct)
		return
	case OpPong:
		sink.onPong(direct)
		return
	case OpClose:
		p.completeClose(direct, sink)
		return
	}
	text := p.msgOp == OpText
	buffered := p.msg
	payload := buffered
	if buffered == nil {
		if text && !p.utf8.write(direct) {
			p.fail(errInvalidUTF8)
			return
		}
		payload = direct
	}
	if !p.frameFin {
		return
	}
	if text && !p.utf8.complete() {
		p.fail(errInvalidUTF8)
		return
	}
	p.msg, p.msgOp, p.msgLen = nil, 0, 0
	p.units++
	if payload == nil {
		payload = []byte{}
	}
	sink.onMessage(text, payload)
	if buffered != nil {
		putMsgBuf(buffered) // the data was only valid during the call
	}
}

func (p *parser) completeClose(payload []byte, sink parserSink) {
	switch {
	case len(payload) == 0:
		p.closed = true
		p.release()
		sink.onClose(CloseNoStatus, "")
	case len(payload) == 1:
		p.fail(errCloseLength)
	default:
		code := int(binary.BigEndian.Uint16(payload))
		if !ValidCloseCode(code) {
			p.fail(errCloseCode)
			return
		}
		if !utf8.Valid(payload[2:]) {
			p.fail(errCloseReasonUTF8)
			return
		}
		p.closed = true
		p.release()
		sink.onClose(code, string(payload[2:]))
	}
}
