package chat

import (
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Live delivery on one node. The bus may deliver a conversation's message
// frames out of seq order (two nodes commit to it concurrently), twice (a
// retried send re-publishes) or not at all (an outage, a node that died
// between commit and publish). Each node therefore sequences delivery per
// conversation it has subscribers for: it remembers the last seq it
// delivered, delivers the next one at once, holds frames that are ahead,
// fills a gap from the store when it has not closed by itself within
// GapWait, and drops what is at or below the last delivered seq. When the
// bus may have lost messages (it reconnected, or dropped some for a slow
// subscriber) it reads every followed conversation's last seq from the
// store and fills up to it (syncFromStore). So every connection that stays connected gets
// every stored message exactly once, in seq order.

// seqMarker starts a bus payload carrying a message frame and its seq:
// the marker, 8 bytes of seq (big-endian), the frame's JSON. Anything else
// on a conversation topic (typing, edits, device events) is a JSON frame,
// delivered as it comes.
const seqMarker = 0x01

// maxPending bounds the frames held per conversation while a gap is open;
// past it the gap is filled at once.
const maxPending = 4096

// maxHeld bounds the frames held for one connection during its resume;
// past it the connection is closed as a slow consumer.
const maxHeld = 4096

func encodeSequenced(seq int64, frame []byte) []byte {
	out := make([]byte, 9, 9+len(frame))
	out[0] = seqMarker
	binary.BigEndian.PutUint64(out[1:9], uint64(seq))
	return append(out, frame...)
}

func decodeSequenced(data []byte) (seq int64, frame []byte, ok bool) {
	if len(data) < 9 || data[0] != seqMarker {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(data[1:9])), data[9:], true
}

// delivery is the node's per-conversation sequencer.
type delivery struct {
	s       *Service
	gapWait time.Duration

	mu    sync.Mutex
	convs map[string]*convSeq // followed conversations; guarded by mu

	fillq   chan *convSeq // conversations to fill from the store
	syncNow chan struct{} // a syncFromStore pass is wanted (the bus missed messages)

	m deliveryMetrics
}

type deliveryMetrics struct {
	holds, dups, fills, filled atomic.Uint64
	syncs                      atomic.Uint64 // store sync passes
	unfinished                 atomic.Int64  // conversations the last pass could not read
}

// convSeq is one conversation's delivery state on this node.
type convSeq struct {
	conv, topic string

	mu      sync.Mutex
	last    int64            // last seq delivered here; -1: unknown yet
	pending map[int64][]byte // frames ahead of last+1, by seq
	holds   map[uint64]*hold // connections resuming: frames wait for their resumed frame
	timer   *time.Timer      // armed while a gap is open
	syncTo  int64            // fill up to this seq, read from the store before its members (bus outage); 0: none
	queued  bool             // in fillq
	gone    bool             // no longer followed
}

type hold struct {
	frames   []*hub.Frame
	overflow bool
}

func newDelivery(s *Service, gapWait time.Duration) *delivery {
	return &delivery{s: s, gapWait: gapWait, convs: make(map[string]*convSeq), fillq: make(chan *convSeq, 1024),
		syncNow: make(chan struct{}, 1)}
}

// follow starts sequencing conv (if not already) from last, the last seq
// stored before this node's subscription (-1 if unknown: the first frame
// then sets it). Called under Service.subsMu before the first local
// subscriber joins the topic.
func (d *delivery) follow(conv string, last int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.convs[conv] == nil {
		d.convs[conv] = &convSeq{conv: conv, topic: topic(conv), last: last,
			pending: make(map[int64][]byte), holds: make(map[uint64]*hold)}
	}
}

// followsAll reports whether every one of convs is followed already, so a
// new subscriber needs no starting seq from the store. Called under
// Service.subsMu (which unfollow needs too, so the answer holds until the
// caller releases it).
func (d *delivery) followsAll(convs []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range convs {
		if d.convs[c] == nil {
			return false
		}
	}
	return true
}

// unfollow forgets conv once no local connection subscribes to it.
// Called under Service.subsMu.
func (d *delivery) unfollow(conv string) {
	d.mu.Lock()
	cs := d.convs[conv]
	delete(d.convs, conv)
	d.mu.Unlock()
	if cs != nil {
		cs.mu.Lock()
		cs.gone = true
		if cs.timer != nil {
			cs.timer.Stop()
			cs.timer = nil
		}
		cs.pending = nil
		cs.mu.Unlock()
	}
}

func (d *delivery) get(conv string) *convSeq {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.convs[conv]
}

// onFrame is the router's handler of conversation topics: what the bus
// carries for one of them, from this node or another.
func (d *delivery) onFrame(topic string, data []byte) {
	seq, frame, ok := decodeSequenced(data)
	if !ok {
		d.s.hub.Publish(topic, hub.NewFrame(data))
		return
	}
	cs := d.get(strings.TrimPrefix(topic, topicPrefix))
	if cs == nil {
		return // nobody here follows it any more
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gone {
		return
	}
	if cs.last < 0 {
		cs.last = seq - 1
	}
	switch {
	case seq <= cs.last:
		d.m.dups.Add(1)
	case seq == cs.last+1:
		d.deliverLocked(cs, seq, frame)
		d.drainLocked(cs)
	default:
		if _, dup := cs.pending[seq]; dup {
			d.m.dups.Add(1)
			return
		}
		cs.pending[seq] = frame
		d.m.holds.Add(1)
		if len(cs.pending) >= maxPending {
			d.queueLocked(cs)
		} else {
			d.armLocked(cs)
		}
	}
}

// deliverLocked sends frame (seq = last+1) to the conversation's local
// subscribers, or into the hold of those resuming.
func (d *delivery) deliverLocked(cs *convSeq, seq int64, frame []byte) {
	pm := hub.NewFrame(frame)
	cs.last = seq
	delete(cs.pending, seq)
	if len(cs.holds) == 0 {
		d.s.hub.Publish(cs.topic, pm)
		return
	}
	d.s.hub.PublishExcept(cs.topic, pm, func(c hub.Client) bool {
		h := cs.holds[c.ConnID()]
		if h == nil {
			return false
		}
		if len(h.frames) < maxHeld {
			h.frames = append(h.frames, pm)
		} else {
			h.overflow = true
		}
		return true
	})
}

// drainLocked delivers the held frames that have become next in line.
func (d *delivery) drainLocked(cs *convSeq) {
	for len(cs.pending) > 0 {
		f, ok := cs.pending[cs.last+1]
		if !ok {
			return
		}
		d.deliverLocked(cs, cs.last+1, f)
	}
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
}

// armLocked starts the gap timer unless it runs: a gap still open after
// gapWait is filled from the store.
func (d *delivery) armLocked(cs *convSeq) {
	if cs.timer != nil || cs.queued {
		return
	}
	cs.timer = time.AfterFunc(d.gapWait, func() {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		cs.timer = nil
		if !cs.gone && (len(cs.pending) > 0 || cs.syncTo > 0) {
			d.queueLocked(cs)
		}
	})
}

// queueLocked hands cs to the fillers (once until they take it).
func (d *delivery) queueLocked(cs *convSeq) {
	if cs.queued || cs.gone {
		return
	}
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
	select {
	case d.fillq <- cs:
		cs.queued = true
	default:
		d.armLocked(cs) // the fillers are behind: try again later
	}
}

// lastSeqs reads the last stored seq of each of convs, in one read. When
// it fails, last is empty: every conversation waits for the next pass; one
// that no longer exists is in gone.
func (d *delivery) lastSeqs(ctx context.Context, convs []string) (last map[string]int64, gone map[string]bool) {
	last, err := d.s.st.LastSeqs(ctx, convs)
	if err != nil {
		if ctx.Err() == nil {
			d.s.storeTrouble(err)
		}
		return map[string]int64{}, nil
	}
	gone = map[string]bool{}
	for _, conv := range convs {
		if _, ok := last[conv]; !ok {
			gone[conv] = true
		}
	}
	return last, gone
}

// resync fills each conversation in upTo (that this node still follows)
// up to the seq given for it: the bus was down and other nodes' frames may
// be lost.
func (d *delivery) resync(upTo map[string]int64) {
	for conv, seq := range upTo {
		cs := d.get(conv)
		if cs == nil {
			continue
		}
		cs.mu.Lock()
		if seq > cs.syncTo {
			cs.syncTo = seq
		}
		d.queueLocked(cs)
		cs.mu.Unlock()
	}
}

// syncFromStore brings convs (nil: every followed conversation) up to date
// from the store after frames may have been lost (a bus outage, or its
// end), a chunk at a time. It returns those it could not: the caller tries
// them again later.
//
// Each conversation's last seq is read before its members, and only
// messages up to it are delivered: they were stored before the member list
// that let their recipients keep them was read, so a message stored after a
// member's removal never reaches that member (the removal is in the list).
// A conversation whose members could not be read waits for the next pass.
func (d *delivery) syncFromStore(ctx context.Context, convs []string) (unfinished []string) {
	if convs == nil {
		d.mu.Lock()
		convs = make([]string, 0, len(d.convs))
		for conv := range d.convs {
			convs = append(convs, conv)
		}
		d.mu.Unlock()
	}
	d.m.syncs.Add(1)
	for len(convs) > 0 && ctx.Err() == nil {
		n := min(len(convs), syncChunk)
		unfinished = append(unfinished, d.syncConvs(ctx, convs[:n])...)
		convs = convs[n:]
	}
	unfinished = append(unfinished, convs...)
	d.m.unfinished.Store(int64(len(unfinished)))
	return unfinished
}

// syncChunk is how many conversations one step of syncFromStore reads.
const syncChunk = 256

// syncConvs is one step of syncFromStore.
func (d *delivery) syncConvs(ctx context.Context, convs []string) (unfinished []string) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	upTo, gone := d.lastSeqs(ctx, convs)
	checked := d.s.pruneRemovedMembers(ctx, convs)
	for conv := range upTo {
		if !checked[conv] {
			delete(upTo, conv)
		}
	}
	d.resync(upTo)
	for _, conv := range convs {
		if _, done := upTo[conv]; !done && !gone[conv] && d.get(conv) != nil {
			unfinished = append(unfinished, conv)
		}
	}
	return unfinished
}

// syncWanted is the bus's OnMissed callback (it must not block): it asks
// runStoreSync for a pass and a reconcile at once.
func (d *delivery) syncWanted() {
	select {
	case d.syncNow <- struct{}{}:
	default: // a pass is already due
	}
}

// outageSync is how often, while the bus is disconnected, every followed
// conversation is filled from the store: listeners keep getting what other
// nodes store, a little late, and the backlog at reconnect stays small.
const outageSync = time.Second

// syncTimeout bounds the reads of one step of a store sync.
const syncTimeout = 10 * time.Second

// runStoreSync runs syncFromStore over every followed conversation every
// outageSync while connected reports false. Each time the bus missed
// messages (syncWanted) it runs it once, then reconciles memberships
// (reconcile.go), then, every outageSync, runs it over the conversations
// it could not finish until there are none. It returns when ctx ends.
func (d *delivery) runStoreSync(ctx context.Context, connected func() bool) {
	defer d.s.wg.Done()
	t := time.NewTicker(outageSync)
	defer t.Stop()
	var unfinished []string
	for {
		select {
		case <-t.C:
			switch {
			case !connected():
				unfinished = d.syncFromStore(ctx, nil)
			case len(unfinished) > 0:
				unfinished = d.syncFromStore(ctx, unfinished)
			}
		case <-d.syncNow:
			unfinished = d.syncFromStore(ctx, nil)
			rctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
			d.s.reconcileMemberships(rctx)
			cancel()
			if !pause(ctx, repairGap) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// runFiller fills conversations from the store until ctx ends. Several run,
// so a conversation whose reads hang does not hold up the others.
func (d *delivery) runFiller(ctx context.Context) {
	defer d.s.wg.Done()
	for {
		select {
		case cs := <-d.fillq:
			d.fill(ctx, cs)
		case <-ctx.Done():
			return
		}
	}
}

// fill reads the missing messages of cs from the store, without holding
// its lock, and delivers them in order with what was held.
func (d *delivery) fill(ctx context.Context, cs *convSeq) {
	cs.mu.Lock()
	cs.queued = false
	if cs.gone {
		cs.mu.Unlock()
		return
	}
	from, to, syncTo := cs.last, cs.syncTo, cs.syncTo
	cs.syncTo = 0
	for seq := range cs.pending {
		to = max(to, seq-1)
	}
	cs.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, d.s.cfg.SendTimeout)
	defer cancel()
	retry := func(err error) {
		d.s.storeTrouble(err)
		cs.mu.Lock()
		cs.syncTo = max(cs.syncTo, syncTo)
		d.armLocked(cs)
		cs.mu.Unlock()
	}
	if from < 0 { // unknown start: follow from the store's last seq on
		c, err := d.s.st.ConversationByID(ctx, cs.conv)
		if err != nil {
			retry(err)
			return
		}
		from, to = c.LastSeq, max(to, c.LastSeq)
		cs.mu.Lock()
		if cs.last < 0 {
			cs.last = from
		}
		cs.mu.Unlock()
	}
	// Page by page, each delivered before the next is read, so that a
	// long gap reaches the connections' queues in slices, not at once.
	n := 0
	for after := from; after < to; {
		page, _, err := d.s.st.History(ctx, store.HistoryQuery{ConversationID: cs.conv, After: after, Before: to + 1, Limit: 200, Forward: true})
		if err != nil {
			retry(err)
			return
		}
		if len(page) == 0 {
			break
		}
		frames := make([][]byte, len(page))
		for i, m := range page {
			frames[i] = protocol.Marshal(d.s.MessageFrame(ctx, m))
		}
		after = page[len(page)-1].Seq
		cs.mu.Lock()
		if cs.gone {
			cs.mu.Unlock()
			return
		}
		for i, m := range page {
			if m.Seq == cs.last+1 {
				d.deliverLocked(cs, m.Seq, frames[i])
				n++
				d.drainLocked(cs)
			}
		}
		cs.mu.Unlock()
	}
	d.s.storeOK()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gone {
		return
	}
	d.drainLocked(cs)
	for seq := range cs.pending {
		if seq <= cs.last {
			delete(cs.pending, seq)
		}
	}
	if len(cs.pending) > 0 {
		d.armLocked(cs)
	}
	d.m.fills.Add(1)
	d.m.filled.Add(uint64(n))
}

// beginHold snapshots conv's delivery position for a resuming connection
// and holds the frames that follow for it until endHold. ok is false when
// this node does not follow conv (or does not know its position yet).
func (d *delivery) beginHold(conv string, c hub.Client) (last int64, ok bool) {
	cs := d.get(conv)
	if cs == nil {
		return 0, false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gone || cs.last < 0 {
		return 0, false
	}
	cs.holds[c.ConnID()] = &hold{}
	return cs.last, true
}

// endHold sends first (the resumed frame), then what was held, and lets
// frames through again, all under the conversation's lock so that nothing
// overtakes.
func (d *delivery) endHold(conv string, c hub.Client, first func()) {
	cs := d.get(conv)
	if cs == nil {
		first()
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	h := cs.holds[c.ConnID()]
	delete(cs.holds, c.ConnID())
	first()
	if h == nil {
		return
	}
	if h.overflow {
		c.Close(protocol.CloseSlowConsumer)
		return
	}
	for _, pm := range h.frames {
		if c.Send(pm) != nil {
			return
		}
	}
}
