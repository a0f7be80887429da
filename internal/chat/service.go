package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Store is what the messaging service needs from storage.
type Store interface {
	store.ChatStore
	UserByID(ctx context.Context, id string) (*unhidra.User, error)
	UserByName(ctx context.Context, name string) (*unhidra.User, error)
}

// Identities is how the service learns about members that are not
// accounts (devices), from the service that owns them (*device.Service).
// The service never interprets an ID's form.
type Identities interface {
	// LookupIdentity returns the name and owner of an identity the
	// implementation manages and whether it was revoked; an error with code
	// protocol.ErrNotFound when it manages no such identity.
	LookupIdentity(ctx context.Context, id string) (name, owner string, revoked bool, err error)
	// Manages reports, without a lookup, whether id is one of the
	// implementation's identities. Such members (devices) receive the
	// messages of their conversations but take no part in presence:
	// firmware gets no presence frames to skip, and a device's own online
	// state is its device_state.
	Manages(id string) bool
}

// quiet reports whether id takes no part in presence (see
// Identities.Manages).
func (s *Service) quiet(id string) bool {
	return s.cfg.Identities != nil && s.cfg.Identities.Manages(id)
}

// Actor is the authenticated identity acting: a user, bot or device. It
// comes from the connection or the request, never from a frame's body.
type Actor struct {
	ID    string
	Name  string
	Admin bool // a server administrator
}

// Config tunes the service. Zero fields mean the documented defaults.
type Config struct {
	// Identities resolves members that are not accounts (devices); nil:
	// only accounts can be members.
	Identities Identities
	// SendRate bounds messages per sender across all its connections, on
	// top of the gateway's per-connection frame rate. Default 10/s, burst 30.
	SendRate ratelimit.Limit
	// ChannelRate bounds the channels one member (not an administrator)
	// creates. Default 20 at once, then one per 3 minutes.
	ChannelRate ratelimit.Limit
	// TypingRate bounds typing notices per sender and conversation.
	// Default one per 2 s, burst 2.
	TypingRate ratelimit.Limit
	// MaxBatch bounds the messages committed in one transaction. Default 512.
	MaxBatch int
	// CommitDelay is the longest the writer waits for the senders of its
	// previous batch to send again before it commits a smaller batch.
	// Default 1 ms; negative disables waiting.
	CommitDelay time.Duration
	// QueueLen bounds the sends waiting for each writer. Default 8192.
	QueueLen int
	// Writers is the number of group-commit writers; conversations are
	// spread over them. One suits SQLite (one writer connection); more let
	// PostgreSQL commit several batches at once. Default 1.
	Writers int
	// IdempotencyTTL is how long a client's send id is remembered. Default 24 h.
	IdempotencyTTL time.Duration
	// ResumeLimit is the most messages a resume replays per conversation.
	// Default 300.
	ResumeLimit int
	// PresenceRefresh is how often this node re-announces who is connected
	// to it; another node's word expires after three periods. Default 15 s.
	PresenceRefresh time.Duration
	// ResumeBytes bounds the encoded backlog of one resume in all, so a
	// resume cannot overflow the connection's send queue. Default 512 KiB.
	ResumeBytes int
	// SendTimeout bounds how long a send waits for the store (queueing
	// and commit): past it the send fails with protocol.ErrUnavailable and a retry
	// hint, never an ack. Store reads that fill delivery gaps use it too.
	// Default 5 s.
	SendTimeout time.Duration
	// GapWait is how long a node holds a message frame that is ahead of
	// the next expected seq before it reads the gap from the store.
	// Default 200 ms.
	GapWait time.Duration
	// AfterCommit, if set, runs on the writer after each successful
	// commit, before anything is acknowledged or published (a test hook:
	// the fault-injection suite kills the process there).
	AfterCommit func()
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.PresenceRefresh <= 0 {
		c.PresenceRefresh = 15 * time.Second
	}
	if c.SendRate == (ratelimit.Limit{}) {
		c.SendRate = ratelimit.Limit{Burst: 30, Every: 100 * time.Millisecond}
	}
	if c.TypingRate == (ratelimit.Limit{}) {
		c.TypingRate = ratelimit.Limit{Burst: 2, Every: 2 * time.Second}
	}
	if c.ChannelRate == (ratelimit.Limit{}) {
		c.ChannelRate = ratelimit.Limit{Burst: 20, Every: 3 * time.Minute}
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.CommitDelay == 0 {
		c.CommitDelay = time.Millisecond
	}
	if c.Writers <= 0 {
		c.Writers = 1
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 8192
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.ResumeLimit <= 0 {
		c.ResumeLimit = 300
	}
	if c.ResumeBytes <= 0 {
		c.ResumeBytes = 512 << 10
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 5 * time.Second
	}
	if c.GapWait <= 0 {
		c.GapWait = 200 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service is the messaging service: channel rules, the send pipeline with
// its group-commit writer, history, resume, presence and typing.
//
// Messages are stored before they are acknowledged, and acknowledged
// before they are fanned out. Writer goroutines commit concurrent sends in
// batches and publish each batch in seq order; every node sequences what
// it delivers per conversation (delivery.go), so every connection sees a
// conversation's messages in seq order, each once.
type Service struct {
	// Static after New.
	cfg    Config
	st     Store
	router *hub.Router // cluster-wide routing
	hub    *hub.Hub    // this node's connections (router.Hub())
	// membershipSub receives membership changes from every node.
	membershipSub bus.Subscription
	presenceSub   bus.Subscription
	names         nameCache
	log           *slog.Logger
	sends         *ratelimit.Keyed
	typing        *ratelimit.Keyed
	creates       *ratelimit.Keyed // channel creations per member
	queues        []chan *sendJob  // one per writer; never closed, writers stop on ctx
	seed          maphash.Seed     // spreads conversations over writers

	// delivery sequences each conversation's message frames on this node.
	delivery *delivery
	metrics  *metrics
	// storeDown is set while the store fails (one log line per outage).
	storeDown atomic.Int64 // unix ns of the first failure; 0 while fine

	// subsMu serialises changes of subscriptions (connect, disconnect,
	// membership changes), so a connection never stays subscribed to a
	// conversation it left.
	subsMu sync.Mutex
	conns  map[uint64]*connState // guarded by subsMu
	// changes counts membership changes per identity (guarded by subsMu),
	// so Connect can read memberships without holding subsMu and still
	// notice a join or leave that raced with the read.
	changes map[string]uint64
	// members caches each identity's conversations and co-members for
	// Connect and presence (membercache.go).
	members *memberCache
	// busUp reports whether the bus delivers other nodes' changes now.
	busUp func() bool

	presence presence

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// connState is what the service tracks per live connection.
type connState struct {
	client hub.Client
	convs  map[string]struct{} // subscribed conversations; guarded by Service.subsMu
	device bool                // a device: member of conversations, but no presence
}

// New returns a running service; Close stops it.
func New(st Store, r *hub.Router, cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, st: st, router: r, hub: r.Hub(), log: log,
		sends:   ratelimit.NewKeyed(cfg.SendRate, 0),
		typing:  ratelimit.NewKeyed(cfg.TypingRate, 0),
		creates: ratelimit.NewKeyed(cfg.ChannelRate, 0),
		seed:    maphash.MakeSeed(),
		conns:   make(map[uint64]*connState),
		changes: make(map[string]uint64),
		ctx:     ctx, cancel: cancel,
	}
	s.names.st, s.names.ids = st, cfg.Identities
	s.presence.entries = make(map[string]*presenceEntry)
	s.presence.remote = make(map[string]map[string]remoteEntry)
	s.presence.nodes = make(map[string]time.Time)
	s.presence.deferred = make(map[string]bool)
	s.presence.node = newNodeID()
	s.presence.expiry = 3 * cfg.PresenceRefresh
	s.metrics = newMetrics(s)
	s.delivery = newDelivery(s, cfg.GapWait)
	r.HandleTopics(topicPrefix, s.delivery.onFrame)
	s.members = newMemberCache(memberCacheTTL, memberCacheMax)
	s.busUp = func() bool { return true }
	mb, misses := r.Bus().(interface{ OnMissed(func()) })
	if misses { // after an outage, or drops for a slow subscriber
		mb.OnMissed(s.members.forget)      // changes may have been missed
		mb.OnMissed(s.delivery.syncWanted) // frames and memberships are re-read
	}
	cb, disconnects := r.Bus().(interface{ Connected() bool })
	if disconnects {
		s.busUp = cb.Connected
	}
	if misses || disconnects {
		s.wg.Add(1)
		go s.delivery.runStoreSync(ctx, s.busUp)
	}
	s.wg.Add(fillers)
	for range fillers {
		go s.delivery.runFiller(ctx)
	}
	s.wg.Add(1 + cfg.Writers)
	for range cfg.Writers {
		q := make(chan *sendJob, cfg.QueueLen)
		s.queues = append(s.queues, q)
		go s.runWriter(q)
	}
	go s.runJanitor()
	s.wg.Add(1)
	go s.runMemberPrune()
	// Membership changes are carried out on every node: each subscribes
	// its own connections of the member.
	sub, err := r.Bus().Subscribe(membershipSubject, s.applyMembership)
	if err != nil {
		log.Error("chat: membership changes will not reach other nodes", "err", err)
	}
	s.membershipSub = sub
	if s.presenceSub, err = r.Bus().Subscribe(presenceSubject, s.onPresenceNote); err != nil {
		log.Error("chat: presence will not be shared with other nodes", "err", err)
	}
	s.wg.Add(1)
	go s.runPresence()
	return s
}

// Close stops the writer (pending sends fail with protocol.ErrUnavailable) and the
// janitor, and waits for them.
func (s *Service) Close() error {
	if s.membershipSub != nil {
		s.membershipSub.Unsubscribe()
	}
	if s.presenceSub != nil {
		s.notePresence(presenceNote{Final: true}) // other nodes forget ours now
		s.presenceSub.Unsubscribe()
	}
	s.cancel()
	s.wg.Wait()
	for _, q := range s.queues { // sends that raced with the shutdown
		s.failPending(q)
	}
	return nil
}

// memberCacheTTL bounds how long a cached membership can outlive a lost
// bus message; memberCacheMax bounds the cache (cleared when full).
const (
	memberCacheTTL = 10 * time.Second
	memberCacheMax = 100_000
)

// topicPrefix starts the hub topics of conversations.
const topicPrefix = "conv:"

// fillers is the number of goroutines reading delivery gaps from the store.
const fillers = 4

// topic is the hub topic of a conversation's live events.
func topic(conv string) string { return topicPrefix + conv }

// SendInput is one message to send: to a conversation (Channel) or to a
// person (To: a user ID or name; the DM is opened on first use).
type SendInput struct {
	Channel  string
	To       string
	Body     string
	ClientID string // idempotency key, optional
}

type sendJob struct {
	req      store.AppendRequest
	fromName string                 // the sender's name, for the message frame
	onStored func(*unhidra.Message) // runs on the writer after commit, before fan-out
	done     chan store.AppendResult
	// state is jobWaiting until the writer answers (jobAnswered) or the
	// sender gives up (jobAbandoned); whoever moves it first decides, so
	// a send that timed out is never acknowledged afterwards.
	state atomic.Int32
}

const (
	jobWaiting int32 = iota
	jobAnswered
	jobAbandoned
)

// unavailable is the error of a send the store did not take in time.
func unavailable(format string) *unhidra.Error {
	e := unhidra.Errorf(protocol.ErrUnavailable, "%s", format)
	e.RetryAfter = 1
	return e
}

// Send validates and stores a message, then fans it out. onStored, when
// set, runs after the commit and before the fan-out (the WebSocket ack).
// It returns the stored message (the original one, with dup set, when the
// client ID was used before).
func (s *Service) Send(ctx context.Context, actor Actor, in SendInput, onStored func(*unhidra.Message)) (m *unhidra.Message, dup bool, err error) {
	if err := validBody(in.Body); err != nil {
		return nil, false, err
	}
	if len(in.ClientID) > unhidra.MaxClientIDLen || !utf8.ValidString(in.ClientID) {
		return nil, false, unhidra.Errorf(protocol.ErrInvalid, "The id must be at most %d bytes of UTF-8.", unhidra.MaxClientIDLen)
	}
	if ok, retry := s.sends.Allow(actor.ID, s.cfg.Now()); !ok {
		e := unhidra.Errorf(protocol.ErrRateLimited, "Too many messages; slow down.")
		e.RetryAfter = int64(max(1, (retry+time.Second-1)/time.Second))
		return nil, false, e
	}
	conv := in.Channel
	switch {
	case (in.Channel == "") == (in.To == ""):
		return nil, false, unhidra.Errorf(protocol.ErrInvalid, "A message needs exactly one of channel and to.")
	case in.To != "":
		c, err := s.OpenDM(ctx, actor, []string{in.To})
		if err != nil {
			return nil, false, err
		}
		conv = c.ID
	case len(conv) > unhidra.MaxMemberIDLen:
		return nil, false, unhidra.Errorf(protocol.ErrNotFound, "No such conversation, or you are not a member.")
	case strings.HasPrefix(conv, unhidra.PrefixDM+"_"):
		// The owner may have withdrawn the permission since the DM opened.
		if err := s.mayDM(ctx, actor.ID); err != nil {
			return nil, false, err
		}
	}
	job := &sendJob{
		req:      store.AppendRequest{ConversationID: conv, SenderID: actor.ID, ClientID: in.ClientID, Body: in.Body},
		fromName: actor.Name,
		onStored: onStored,
		done:     make(chan store.AppendResult, 1),
	}
	timeout := time.NewTimer(s.cfg.SendTimeout)
	defer timeout.Stop()
	select {
	case s.queues[maphash.String(s.seed, conv)%uint64(len(s.queues))] <- job:
	case <-timeout.C:
		s.metrics.sendTimeouts.Inc()
		s.storeTrouble(nil)
		return nil, false, unavailable("The server is busy; retry with the same id.")
	case <-ctx.Done():
		return nil, false, unavailable("The server is busy; retry with the same id.")
	case <-s.ctx.Done():
		return nil, false, unavailable("The server is shutting down; retry with the same id.")
	}
	// Once queued, the writer answers every job (also when stopping), so
	// waiting here cannot leak; the timeout and the caller's deadline
	// still apply, and a job given up on is never acknowledged.
	giveUp := func() (*unhidra.Message, bool, error) {
		if !job.state.CompareAndSwap(jobWaiting, jobAbandoned) {
			r := <-job.done // answered meanwhile: the answer stands
			return r.Message, r.Duplicate, r.Err
		}
		return nil, false, unavailable("The message may or may not be stored; retry with the same id.")
	}
	select {
	case r := <-job.done:
		return r.Message, r.Duplicate, r.Err
	case <-timeout.C:
		s.metrics.sendTimeouts.Inc()
		s.storeTrouble(nil)
		return giveUp()
	case <-ctx.Done():
		return giveUp()
	}
}

// validBody checks a message body: valid UTF-8, not blank, at most
// MaxBodyChars characters, no NUL.
func validBody(body string) error {
	switch {
	case !utf8.ValidString(body):
		return unhidra.Errorf(protocol.ErrInvalid, "The body must be valid UTF-8.")
	case strings.TrimFunc(body, unicode.IsSpace) == "":
		return unhidra.Errorf(protocol.ErrInvalid, "The body must not be empty.")
	case utf8.RuneCountInString(body) > unhidra.MaxBodyChars:
		return unhidra.Errorf(protocol.ErrTooLarge, "The body is longer than %d characters.", unhidra.MaxBodyChars)
	case strings.ContainsRune(body, 0):
		return unhidra.Errorf(protocol.ErrInvalid, "The body must not contain NUL characters.")
	}
	return nil
}

// runWriter is the group-commit loop of one writer: it takes every send
// waiting in its queue (up to MaxBatch), commits them in one transaction,
// answers them and fans them out, in order. A conversation always maps to
// the same writer, so its messages are published in seq order.
func (s *Service) runWriter(queue chan *sendJob) {
	defer s.wg.Done()
	batch := make([]*sendJob, 0, s.cfg.MaxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	prev := 0 // size of the previous batch
	for {
		select {
		case j := <-queue:
			batch = append(batch[:0], j)
		case <-s.ctx.Done():
			s.failPending(queue)
			return
		}
		// The senders of the previous batch were all answered at once and
		// are sending again: wait (at most CommitDelay) until as many as
		// last time are here, so one fsync serves them all. A lone sender
		// (prev <= 1) never waits.
		target := min(max(prev, 1), s.cfg.MaxBatch)
		lingering := false
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case j := <-queue:
				batch = append(batch, j)
				continue
			default:
			}
			if len(batch) >= target || s.cfg.CommitDelay <= 0 {
				break
			}
			if !lingering {
				linger.Reset(s.cfg.CommitDelay)
				lingering = true
			}
			select {
			case j := <-queue:
				batch = append(batch, j)
			case <-linger.C:
				lingering = false
				break fill
			case <-s.ctx.Done():
				break fill
			}
		}
		if lingering && !linger.Stop() {
			<-linger.C
		}
		prev = len(batch)
		s.commit(batch)
		clear(batch)
	}
}

// failPending answers the sends still queued at shutdown.
func (s *Service) failPending(queue chan *sendJob) {
	for {
		select {
		case j := <-queue:
			j.state.CompareAndSwap(jobWaiting, jobAnswered)
			j.done <- store.AppendResult{Err: unavailable("The server is shutting down; retry with the same id.")}
		default:
			return
		}
	}
}

func (s *Service) commit(batch []*sendJob) {
	reqs := make([]store.AppendRequest, len(batch))
	for i, j := range batch {
		reqs[i] = j.req
	}
	// The commit is not cut short by shutdown: a started batch finishes,
	// so its senders learn the truth. It is cut at SendTimeout: a store
	// that does not answer fails the batch (the senders have given up by
	// then anyway).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.SendTimeout)
	defer cancel()
	results, err := s.st.AppendMessages(ctx, reqs)
	if err != nil {
		s.storeTrouble(err)
		for _, j := range batch {
			e := unavailable("Could not store the message; retry with the same id.")
			e.Err = err
			j.state.CompareAndSwap(jobWaiting, jobAnswered)
			j.done <- store.AppendResult{Err: e}
		}
		return
	}
	s.storeOK()
	if s.cfg.AfterCommit != nil {
		s.cfg.AfterCommit()
	}
	for i, r := range results {
		j := batch[i]
		if !j.state.CompareAndSwap(jobWaiting, jobAnswered) {
			results[i] = store.AppendResult{Err: unavailable("The message may or may not be stored; retry with the same id.")}
		} else if r.Err == nil && j.onStored != nil {
			j.onStored(r.Message)
		}
		if r.Err != nil {
			continue
		}
		// A duplicate is published again: its first publish may never
		// have happened (the node that stored it died first). Receivers
		// drop what they delivered already.
		f := MessageFrame{Type: protocol.TypeMessage, Channel: r.Message.ConversationID, Seq: r.Message.Seq,
			MessageID: r.Message.ID, From: r.Message.SenderID, FromName: j.fromName, FromKind: s.names.kind(s.ctx, r.Message.SenderID), Body: r.Message.Body,
			TS: r.Message.CreatedAt, EditedAt: r.Message.EditedAt, Deleted: !r.Message.DeletedAt.IsZero()}
		if r.Duplicate || f.FromName == "" {
			f = s.MessageFrame(s.ctx, r.Message) // as stored now (edited, deleted)
		}
		s.publishSequenced(r.Message.ConversationID, r.Message.Seq, f)
	}
	for i, j := range batch {
		j.done <- results[i]
	}
}

// storeTrouble records a store failure (nil: a send that timed out): the
// first of an outage is logged, the rest counted.
func (s *Service) storeTrouble(err error) {
	s.metrics.storeFailures.Inc()
	if s.storeDown.CompareAndSwap(0, time.Now().UnixNano()) {
		if err == nil {
			err = context.DeadlineExceeded
		}
		s.log.Error("chat: the store is failing; sends answer unavailable until it recovers", "err", err)
	}
}

// storeOK ends an outage, logging its length.
func (s *Service) storeOK() {
	if since := s.storeDown.Load(); since != 0 && s.storeDown.CompareAndSwap(since, 0) {
		s.log.Warn("chat: the store answers again", "outage", time.Since(time.Unix(0, since)).Round(time.Millisecond))
	}
}

// runJanitor forgets expired idempotency keys every hour.
func (s *Service) runJanitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		if n, err := s.st.DeleteIdempotencyKeys(ctx, s.cfg.Now().Add(-s.cfg.IdempotencyTTL)); err != nil && s.ctx.Err() == nil {
			s.log.Warn("forget idempotency keys", "err", err)
		} else if n > 0 {
			s.log.Debug("forgot idempotency keys", "count", n)
		}
		cancel()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// runMemberPrune drops expired member-cache entries every TTL until the
// service closes.
func (s *Service) runMemberPrune() {
	defer s.wg.Done()
	t := time.NewTicker(memberCacheTTL)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.members.prune(s.cfg.Now())
		case <-s.ctx.Done():
			return
		}
	}
}

// prepare frames a server frame once for a fan-out.
func prepare(v any) *hub.Frame { return hub.NewFrame(protocol.Marshal(v)) }

// publishSequenced sends a message frame with its seq to a conversation's
// live connections on every node, through each node's sequencer. This
// node's subscribers get it before it returns.
func (s *Service) publishSequenced(conv string, seq int64, v any) {
	if err := s.router.Publish(s.ctx, topic(conv), encodeSequenced(seq, protocol.Marshal(v))); err != nil {
		s.log.Debug("chat: publish to the cluster failed; other nodes fill the gap from the store", "conversation", conv, "err", err)
	}
}

// publish sends a frame to a conversation's live connections on every
// node. With the in-process bus it is delivered before publish returns.
func (s *Service) publish(conv string, v any) {
	if err := s.router.Publish(s.ctx, topic(conv), protocol.Marshal(v)); err != nil {
		s.log.Warn("chat: publish to the cluster failed", "conversation", conv, "err", err)
	}
}

// sendTo sends a frame to an identity's connections on every node.
func (s *Service) sendTo(identity string, v any) {
	if err := s.router.SendTo(s.ctx, identity, protocol.Marshal(v)); err != nil {
		s.log.Warn("chat: send to the cluster failed", "identity", identity, "err", err)
	}
}

// PostEvent sends an event frame (a JSON object built by another service,
// e.g. a followed device's state change) to a conversation's live
// connections on every node. Events are not stored and carry no seq.
func (s *Service) PostEvent(ctx context.Context, conv string, frame []byte) error {
	return s.router.Publish(ctx, topic(conv), frame)
}

// RequireMember returns nil when member belongs to the conversation, and an
// error with code protocol.ErrNotFound when it does not (or there is no such
// conversation).
func (s *Service) RequireMember(ctx context.Context, conv, member string) error {
	_, err := s.requireMember(ctx, conv, member)
	return err
}

// requireMember returns actor's membership, or protocol.ErrNotFound (a non-member
// cannot tell a private conversation from a missing one).
func (s *Service) requireMember(ctx context.Context, conv, actor string) (*unhidra.Membership, error) {
	if conv == "" || len(conv) > unhidra.MaxMemberIDLen {
		return nil, unhidra.Errorf(protocol.ErrNotFound, "No such conversation, or you are not a member.")
	}
	m, err := s.st.Membership(ctx, conv, actor)
	if unhidra.ErrorCode(err) == protocol.ErrNotFound {
		return nil, unhidra.Errorf(protocol.ErrNotFound, "No such conversation, or you are not a member.")
	}
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	return m, nil
}

// HistoryPage is a page of a conversation's messages in seq order.
type HistoryPage struct {
	Messages []MessageFrame `json:"messages"`
	HasMore  bool           `json:"has_more"`
}

// History returns messages of a conversation the actor is a member of, in
// seq order. before and after are seq cursors (nil: unset): with after it
// pages forward from there (after=0: from the first message), otherwise
// backward from before (or from the newest). limit defaults to 50, max 200.
func (s *Service) History(ctx context.Context, actor Actor, conv string, before, after *int64, limit int) (*HistoryPage, error) {
	q := store.HistoryQuery{ConversationID: conv, Limit: limit}
	if before != nil {
		q.Before = *before
	}
	if after != nil {
		q.After, q.Forward = *after, true
	}
	if q.Before < 0 || q.After < 0 || limit < 0 || (before != nil && q.Before == 0) {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "before must be positive; after and limit must not be negative.")
	}
	if _, err := s.requireMember(ctx, conv, actor.ID); err != nil {
		return nil, err
	}
	msgs, more, err := s.st.History(ctx, q)
	if err != nil {
		return nil, err
	}
	page := &HistoryPage{Messages: make([]MessageFrame, len(msgs)), HasMore: more}
	for i, m := range msgs {
		page.Messages[i] = s.MessageFrame(ctx, m)
		page.Messages[i].Type = ""
	}
	return page, nil
}

// Edit replaces the body of the actor's own message and tells the
// conversation. conv, when set, must be the message's conversation.
func (s *Service) Edit(ctx context.Context, actor Actor, conv, messageID, body string) (*unhidra.Message, error) {
	if err := validBody(body); err != nil {
		return nil, err
	}
	m, err := s.visibleMessage(ctx, actor, conv, messageID)
	if err != nil {
		return nil, err
	}
	if m.SenderID != actor.ID {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Only the author may edit a message.")
	}
	m, err = s.st.EditMessage(ctx, messageID, body)
	if err != nil {
		return nil, err
	}
	s.publish(m.ConversationID, editedFrame{Type: protocol.TypeMessageEdited, Channel: m.ConversationID,
		Seq: m.Seq, MessageID: m.ID, Body: m.Body, EditedAt: m.EditedAt})
	return m, nil
}

// Delete soft-deletes a message: by its author, a channel owner or admin,
// or a server administrator.
func (s *Service) Delete(ctx context.Context, actor Actor, conv, messageID string) (*unhidra.Message, error) {
	m, err := s.visibleMessage(ctx, actor, conv, messageID)
	if err != nil {
		return nil, err
	}
	if m.SenderID != actor.ID && !actor.Admin {
		mem, err := s.st.Membership(ctx, m.ConversationID, actor.ID)
		if err != nil || (mem.Role != unhidra.ChanOwner && mem.Role != unhidra.ChanAdmin) {
			return nil, unhidra.Errorf(protocol.ErrForbidden, "Only the author or a channel owner or admin may delete a message.")
		}
	}
	m, err = s.st.DeleteMessage(ctx, messageID)
	if err != nil {
		return nil, err
	}
	s.publish(m.ConversationID, deletedFrame{Type: protocol.TypeMessageDeleted, Channel: m.ConversationID,
		Seq: m.Seq, MessageID: m.ID})
	return m, nil
}

// visibleMessage returns a live message of a conversation the actor is a
// member of (server administrators see every one), or protocol.ErrNotFound. A
// non-empty conv must be the message's conversation.
func (s *Service) visibleMessage(ctx context.Context, actor Actor, conv, id string) (*unhidra.Message, error) {
	notFound := unhidra.Errorf(protocol.ErrNotFound, "No such message.")
	if id == "" || len(id) > unhidra.MaxMemberIDLen {
		return nil, notFound
	}
	m, err := s.st.MessageByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if !m.DeletedAt.IsZero() || (conv != "" && conv != m.ConversationID) {
		return nil, notFound
	}
	if !actor.Admin {
		if _, err := s.requireMember(ctx, m.ConversationID, actor.ID); err != nil {
			return nil, notFound
		}
	}
	return m, nil
}

// MarkRead advances the actor's read position in a conversation and
// returns the new position.
func (s *Service) MarkRead(ctx context.Context, actor Actor, conv string, seq int64) (int64, error) {
	if seq < 0 {
		return 0, unhidra.Errorf(protocol.ErrInvalid, "seq must not be negative.")
	}
	if _, err := s.requireMember(ctx, conv, actor.ID); err != nil {
		return 0, err
	}
	return s.st.MarkRead(ctx, conv, actor.ID, seq)
}
