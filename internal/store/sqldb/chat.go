package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

var _ store.ChatStore = (*DB)(nil)

const convColumns = `c.id, c.kind, c.name, c.archived, c.created_by, c.last_seq, c.created_at, c.updated_at`

func scanConversation(row interface{ Scan(...any) error }, extra ...any) (*unhidra.Conversation, error) {
	var c unhidra.Conversation
	var created, updated int64
	dst := append([]any{&c.ID, &c.Kind, &c.Name, &c.Archived, &c.CreatedBy, &c.LastSeq, &created, &updated}, extra...)
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt = store.FromUnixMilli(created), store.FromUnixMilli(updated)
	return &c, nil
}

const messageColumns = `id, conversation_id, seq, sender_id, body, created_at, edited_at, deleted_at`

func scanMessage(row interface{ Scan(...any) error }) (*unhidra.Message, error) {
	var m unhidra.Message
	var created, edited, deleted int64
	if err := row.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.Body, &created, &edited, &deleted); err != nil {
		return nil, err
	}
	m.CreatedAt, m.EditedAt, m.DeletedAt = store.FromUnixMilli(created), store.FromUnixMilli(edited), store.FromUnixMilli(deleted)
	return &m, nil
}

// CreateChannel stores a channel and makes creator its owner. protocol.ErrConflict if
// the name is taken.
func (db *DB) CreateChannel(ctx context.Context, c *unhidra.Conversation, creator string) error {
	if c.ID == "" {
		c.ID = unhidra.NewID(unhidra.PrefixChannel)
	}
	now := db.now()
	c.CreatedBy, c.CreatedAt, c.UpdatedAt, c.LastSeq = creator, now, now, 0
	return db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO conversations (id, kind, name, name_key, archived, created_by, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), c.ID, c.Kind, c.Name, NameKey(c.Name), c.Archived, creator, now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("create channel: %w", db.formatError(err, "A channel with that name exists."))
		}
		return db.addMember(ctx, tx, c.ID, creator, unhidra.ChanOwner, now)
	})
}

func (db *DB) addMember(ctx context.Context, tx *sql.Tx, conv, member, role string, now time.Time) error {
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO conversation_members (conversation_id, member_id, role, joined_at) VALUES (?, ?, ?, ?)`),
		conv, member, role, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("add member: %w", db.formatError(err, "Already a member."))
	}
	return nil
}

// OpenDM returns the DM of exactly these members, creating it if needed.
func (db *DB) OpenDM(ctx context.Context, creator string, members []string) (*unhidra.Conversation, bool, error) {
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	key := strings.Join(sorted, ",")
	find := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) (*unhidra.Conversation, error) {
		return scanConversation(q.QueryRowContext(ctx, db.q(`SELECT `+convColumns+` FROM conversations c WHERE c.dm_key = ?`), key))
	}
	var conv *unhidra.Conversation
	created := false
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		c, err := find(tx)
		if err == nil {
			conv = c
			return nil
		}
		if err != sql.ErrNoRows {
			return fmt.Errorf("find dm: %w", err)
		}
		now := db.now()
		c = &unhidra.Conversation{ID: unhidra.NewID(unhidra.PrefixDM), Kind: unhidra.KindDM, CreatedBy: creator, CreatedAt: now, UpdatedAt: now}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO conversations (id, kind, name, dm_key, created_by, created_at, updated_at)
			VALUES (?, ?, '', ?, ?, ?, ?)`), c.ID, c.Kind, key, creator, now.UnixMilli(), now.UnixMilli()); err != nil {
			return fmt.Errorf("create dm: %w", db.formatError(err, "The conversation exists."))
		}
		for _, m := range sorted {
			if err := db.addMember(ctx, tx, c.ID, m, unhidra.ChanMember, now); err != nil {
				return err
			}
		}
		conv, created = c, true
		return nil
	})
	if unhidra.ErrorCode(err) == protocol.ErrConflict {
		// Another node created it concurrently: use theirs.
		c, err := find(db.write)
		if err != nil {
			return nil, false, fmt.Errorf("find dm: %w", err)
		}
		return c, false, nil
	}
	return conv, created, err
}

// ConversationByID returns the conversation, or protocol.ErrNotFound.
func (db *DB) ConversationByID(ctx context.Context, id string) (*unhidra.Conversation, error) {
	c, err := scanConversation(db.read.QueryRowContext(ctx, db.q(`SELECT `+convColumns+` FROM conversations c WHERE c.id = ?`), id))
	if err != nil {
		return nil, db.notFound(err, "conversation")
	}
	return c, nil
}

// RenameChannel renames a channel. protocol.ErrNotFound or protocol.ErrConflict.
func (db *DB) RenameChannel(ctx context.Context, id, name string) (*unhidra.Conversation, error) {
	return db.updateChannel(ctx, id, `name = ?, name_key = ?`, name, NameKey(name))
}

// ArchiveChannel marks a channel archived. protocol.ErrNotFound.
func (db *DB) ArchiveChannel(ctx context.Context, id string) (*unhidra.Conversation, error) {
	return db.updateChannel(ctx, id, `archived = ?`, true)
}

func (db *DB) updateChannel(ctx context.Context, id, set string, args ...any) (*unhidra.Conversation, error) {
	var c *unhidra.Conversation
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		args := append(append(args, db.now().UnixMilli()), id)
		res, err := tx.ExecContext(ctx, db.q(`UPDATE conversations SET `+set+`, updated_at = ? WHERE id = ? AND kind <> 'dm'`), args...)
		if err != nil {
			return fmt.Errorf("update channel: %w", db.formatError(err, "A channel with that name exists."))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such channel.")
		}
		c, err = scanConversation(tx.QueryRowContext(ctx, db.q(`SELECT `+convColumns+` FROM conversations c WHERE c.id = ?`), id))
		return err
	})
	return c, err
}

// Conversations returns member's conversations (DMs without Members).
// Every WebSocket connect that misses the member cache runs it: it starts
// from the member's rows, an index lookup.
func (db *DB) Conversations(ctx context.Context, member string) ([]*unhidra.ConversationView, error) {
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT `+convColumns+`, m.role, m.last_read_seq
		FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
		WHERE m.member_id = ?
		ORDER BY c.id`), member)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.ConversationView
	for rows.Next() {
		var role sql.NullString
		var lastRead sql.NullInt64
		c, err := scanConversation(rows, &role, &lastRead)
		if err != nil {
			return nil, fmt.Errorf("scan conversation: %w", err)
		}
		out = append(out, &unhidra.ConversationView{Conversation: *c, Member: role.Valid, Role: role.String, LastReadSeq: lastRead.Int64})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return out, nil
}

// ConversationPage implements store.ChatStore. A page reads only its own
// rows (and, for direct messages, their members), so a long list costs
// each page, not each page the whole list.
func (db *DB) ConversationPage(ctx context.Context, member string, dms bool, after string, limit int) ([]*unhidra.ConversationView, error) {
	limit = store.Clamp(limit, 100, 1001)
	query := `SELECT ` + convColumns + `, m.role, m.last_read_seq
		FROM conversations c LEFT JOIN conversation_members m ON m.conversation_id = c.id AND m.member_id = ?
		WHERE (m.member_id IS NOT NULL OR c.kind = 'public') AND c.kind <> 'dm' AND c.id > ?
		ORDER BY c.id LIMIT `
	if dms {
		query = `SELECT ` + convColumns + `, m.role, m.last_read_seq
		FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
		WHERE m.member_id = ? AND c.kind = 'dm' AND c.id > ?
		ORDER BY c.id LIMIT `
	}
	rows, err := db.read.QueryContext(ctx, db.q(query+strconv.Itoa(limitLiteral(limit))), member, after)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	defer rows.Close()
	out := []*unhidra.ConversationView{}
	byID := map[string]*unhidra.ConversationView{}
	for len(out) < limit && rows.Next() {
		var role sql.NullString
		var lastRead sql.NullInt64
		c, err := scanConversation(rows, &role, &lastRead)
		if err != nil {
			return nil, fmt.Errorf("scan conversation: %w", err)
		}
		v := &unhidra.ConversationView{Conversation: *c, Member: role.Valid, Role: role.String, LastReadSeq: lastRead.Int64}
		byID[c.ID] = v
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	rows.Close()
	if !dms || len(out) == 0 {
		return out, nil
	}
	// The members of the page's conversations: one range of IDs, so the
	// query text stays the same whatever the page holds.
	mrows, err := db.read.QueryContext(ctx, db.q(`SELECT m.conversation_id, m.member_id FROM conversation_members m
		JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'dm'
		WHERE m.conversation_id BETWEEN ? AND ?
		AND m.conversation_id IN (SELECT conversation_id FROM conversation_members WHERE member_id = ?)
		ORDER BY m.conversation_id, m.member_id`), out[0].ID, out[len(out)-1].ID, member)
	if err != nil {
		return nil, fmt.Errorf("list dm members: %w", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var conv, m string
		if err := mrows.Scan(&conv, &m); err != nil {
			return nil, fmt.Errorf("scan dm member: %w", err)
		}
		if v := byID[conv]; v != nil {
			v.Members = append(v.Members, m)
		}
	}
	return out, mrows.Err()
}

// ConversationIDs returns the IDs of member's conversations.
func (db *DB) ConversationIDs(ctx context.Context, member string) ([]string, error) {
	return db.strings(ctx, `SELECT conversation_id FROM conversation_members WHERE member_id = ? ORDER BY conversation_id`, member)
}

// CoMembers returns the identities sharing a conversation with member.
func (db *DB) CoMembers(ctx context.Context, member string) ([]string, error) {
	return db.strings(ctx, `SELECT DISTINCT b.member_id FROM conversation_members a
		JOIN conversation_members b ON b.conversation_id = a.conversation_id
		WHERE a.member_id = ? AND b.member_id <> ? ORDER BY b.member_id`, member, member)
}

func (db *DB) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	var out []string
	err := db.scanRows(ctx, db.q(query), args, func(rows *sql.Rows) error {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return out, nil
}

const memberColumns = `conversation_id, member_id, role, last_read_seq, joined_at`

func scanMember(row interface{ Scan(...any) error }) (*unhidra.Membership, error) {
	var m unhidra.Membership
	var joined int64
	if err := row.Scan(&m.ConversationID, &m.MemberID, &m.Role, &m.LastReadSeq, &joined); err != nil {
		return nil, err
	}
	m.JoinedAt = store.FromUnixMilli(joined)
	return &m, nil
}

// Membership returns member's membership, or protocol.ErrNotFound.
func (db *DB) Membership(ctx context.Context, conv, member string) (*unhidra.Membership, error) {
	m, err := scanMember(db.read.QueryRowContext(ctx, db.q(`SELECT `+memberColumns+` FROM conversation_members
		WHERE conversation_id = ? AND member_id = ?`), conv, member))
	if err != nil {
		return nil, db.notFound(err, "membership")
	}
	return m, nil
}

// Members returns the conversation's members ordered by ID.
func (db *DB) Members(ctx context.Context, conv string) ([]*unhidra.Membership, error) {
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT `+memberColumns+` FROM conversation_members
		WHERE conversation_id = ? ORDER BY member_id`), conv)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.Membership
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, fmt.Errorf("scan member: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// LastSeqs returns the LastSeq of each existing conversation of ids.
func (db *DB) LastSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	err := db.eachIn(ctx, `SELECT id, last_seq FROM conversations WHERE id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return err
		}
		out[id] = seq
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("last seqs: %w", err)
	}
	return out, nil
}

// MemberIDs returns the member IDs of each of the conversations.
func (db *DB) MemberIDs(ctx context.Context, convs []string) (map[string][]string, error) {
	out := make(map[string][]string, len(convs))
	err := db.eachIn(ctx, `SELECT conversation_id, member_id FROM conversation_members WHERE conversation_id IN `, convs,
		func(rows *sql.Rows) error {
			var conv, member string
			if err := rows.Scan(&conv, &member); err != nil {
				return err
			}
			out[conv] = append(out[conv], member)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("member ids: %w", err)
	}
	return out, nil
}

// inChunk is how many values one query of eachIn binds. Every query has
// exactly this many placeholders (the last chunk is padded with a value no
// key has, ""): one statement text per query, so one prepared statement.
const inChunk = 128

// eachIn runs query, which ends in "IN ", with each chunk of values as the
// list, and calls scan for every row.
func (db *DB) eachIn(ctx context.Context, query string, values []string, scan func(*sql.Rows) error) error {
	q := db.q(query + placeholders(1, inChunk))
	args := make([]any, inChunk)
	for len(values) > 0 {
		n := min(len(values), inChunk)
		for i := range args {
			args[i] = ""
			if i < n {
				args[i] = values[i]
			}
		}
		values = values[n:]
		if err := db.scanRows(ctx, q, args, scan); err != nil {
			return err
		}
	}
	return nil
}

// scanRows runs query on the read pool and calls scan for every row.
func (db *DB) scanRows(ctx context.Context, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AddMember adds member with role. protocol.ErrConflict if already one, protocol.ErrNotFound if
// the conversation does not exist.
func (db *DB) AddMember(ctx context.Context, conv, member, role string) (*unhidra.Membership, error) {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM conversations WHERE id = ?`), conv).Scan(&n); err != nil {
			return fmt.Errorf("find conversation: %w", err)
		}
		if n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such conversation.")
		}
		return db.addMember(ctx, tx, conv, member, role, now)
	})
	if err != nil {
		return nil, err
	}
	return &unhidra.Membership{ConversationID: conv, MemberID: member, Role: role, JoinedAt: now}, nil
}

// RemoveMember removes member. protocol.ErrNotFound if it was none.
func (db *DB) RemoveMember(ctx context.Context, conv, member string) error {
	res, err := db.write.ExecContext(ctx, db.q(`DELETE FROM conversation_members WHERE conversation_id = ? AND member_id = ?`), conv, member)
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return unhidra.Errorf(protocol.ErrNotFound, "Not a member.")
	}
	return nil
}

// MarkRead advances member's read position, clamped to the last seq.
func (db *DB) MarkRead(ctx context.Context, conv, member string, seq int64) (int64, error) {
	var got int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE conversation_members SET last_read_seq =
			(SELECT CASE WHEN ? < c.last_seq THEN ? ELSE c.last_seq END FROM conversations c WHERE c.id = ?)
			WHERE conversation_id = ? AND member_id = ? AND last_read_seq < ?`), seq, seq, conv, conv, member, seq); err != nil {
			return fmt.Errorf("mark read: %w", err)
		}
		err := tx.QueryRowContext(ctx, db.q(`SELECT last_read_seq FROM conversation_members WHERE conversation_id = ? AND member_id = ?`),
			conv, member).Scan(&got)
		if err != nil {
			return db.notFound(err, "membership")
		}
		return nil
	})
	return got, err
}

// appendChunk bounds the rows or values of one statement, well below both
// databases' limits on bound parameters.
const appendChunk = 400

// AppendMessages stores a batch in one transaction; see store.ChatStore.
//
// It works set by set, not message by message, so the number of statements
// depends on the conversations in the batch rather than on its size: per
// conversation one membership query, one idempotency query and one seq
// reservation, then multi-row inserts. Conversations are locked (the seq
// UPDATE) in ID order, so concurrent batches cannot deadlock.
func (db *DB) AppendMessages(ctx context.Context, reqs []store.AppendRequest) ([]store.AppendResult, error) {
	results := make([]store.AppendResult, len(reqs))
	byConv := map[string][]int{} // conversation → indexes of its requests, in order
	for i, r := range reqs {
		byConv[r.ConversationID] = append(byConv[r.ConversationID], i)
	}
	convs := make([]string, 0, len(byConv))
	for c := range byConv {
		convs = append(convs, c)
	}
	slices.Sort(convs)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		now := db.now()
		var fresh []*unhidra.Message
		var keys []store.AppendRequest // requests with a client id, aligned with keyMsgs
		var keyMsgs []*unhidra.Message
		for _, conv := range convs {
			idx := byConv[conv]
			members, archived, err := db.batchMembers(ctx, tx, conv, reqs, idx)
			if err != nil {
				return err
			}
			known, err := db.batchKnownKeys(ctx, tx, conv, reqs, idx)
			if err != nil {
				return err
			}
			var news []int
			for _, i := range idx {
				r := reqs[i]
				key := r.SenderID + "\x00" + r.ClientID
				switch {
				case !members[r.SenderID]:
					results[i].Err = unhidra.Errorf(protocol.ErrNotFound, "No such conversation, or you are not a member.")
				case archived:
					results[i].Err = unhidra.Errorf(protocol.ErrForbidden, "The channel is archived.")
				case r.ClientID != "" && known[key] != nil:
					results[i] = store.AppendResult{Message: known[key], Duplicate: true}
				default:
					m := &unhidra.Message{ID: unhidra.NewID(unhidra.PrefixMessage), ConversationID: conv, SenderID: r.SenderID, Body: r.Body, CreatedAt: now}
					results[i] = store.AppendResult{Message: m}
					if r.ClientID != "" {
						known[key] = m // a retry later in this batch is a duplicate of it
						keys, keyMsgs = append(keys, r), append(keyMsgs, m)
					}
					news = append(news, i)
				}
			}
			if len(news) == 0 {
				continue
			}
			var last int64
			if err := tx.QueryRowContext(ctx, db.q(`UPDATE conversations SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq`),
				len(news), conv).Scan(&last); err != nil {
				return fmt.Errorf("reserve seqs: %w", err)
			}
			readTo := map[string]int64{}
			for k, i := range news {
				m := results[i].Message
				m.Seq = last - int64(len(news)) + int64(k) + 1
				fresh = append(fresh, m)
				readTo[m.SenderID] = m.Seq
			}
			if err := db.advanceReadPositions(ctx, tx, conv, readTo); err != nil {
				return err
			}
		}
		for chunk := range slices.Chunk(fresh, appendChunk) {
			args := make([]any, 0, 6*len(chunk))
			for _, m := range chunk {
				args = append(args, m.ID, m.ConversationID, m.Seq, m.SenderID, m.Body, now.UnixMilli())
			}
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO messages (id, conversation_id, seq, sender_id, body, created_at) VALUES `+
				placeholders(len(chunk), 6)), args...); err != nil {
				return fmt.Errorf("insert messages: %w", err)
			}
		}
		for start := 0; start < len(keys); start += appendChunk {
			end := min(start+appendChunk, len(keys))
			args := make([]any, 0, 5*(end-start))
			for k := start; k < end; k++ {
				args = append(args, keys[k].SenderID, keys[k].ConversationID, keys[k].ClientID, keyMsgs[k].ID, now.UnixMilli())
			}
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO message_idempotency (sender_id, conversation_id, client_id, message_id, created_at) VALUES `+
				placeholders(end-start, 5)), args...); err != nil {
				return fmt.Errorf("remember client ids: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// placeholders returns "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	row := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return strings.Repeat(row+", ", rows-1) + row
}

// distinctSenders returns the distinct senders of the requests at idx.
func distinctSenders(reqs []store.AppendRequest, idx []int) []string {
	seen := map[string]bool{}
	var out []string
	for _, i := range idx {
		if s := reqs[i].SenderID; !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// batchMembers reports which senders of the requests at idx are members of
// conv, and whether conv is archived.
func (db *DB) batchMembers(ctx context.Context, tx *sql.Tx, conv string, reqs []store.AppendRequest, idx []int) (map[string]bool, bool, error) {
	members := map[string]bool{}
	archived := false
	for chunk := range slices.Chunk(distinctSenders(reqs, idx), appendChunk) {
		args := []any{conv}
		for _, s := range chunk {
			args = append(args, s)
		}
		rows, err := tx.QueryContext(ctx, db.q(`SELECT m.member_id, c.archived FROM conversation_members m
			JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = ? AND m.member_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`), args...)
		if err != nil {
			return nil, false, fmt.Errorf("check membership: %w", err)
		}
		for rows.Next() {
			var member string
			if err := rows.Scan(&member, &archived); err != nil {
				rows.Close()
				return nil, false, fmt.Errorf("check membership: %w", err)
			}
			members[member] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("check membership: %w", err)
		}
	}
	return members, archived, nil
}

// batchKnownKeys returns the messages already stored under the client IDs
// of the requests at idx, keyed by sender + "\x00" + client ID.
func (db *DB) batchKnownKeys(ctx context.Context, tx *sql.Tx, conv string, reqs []store.AppendRequest, idx []int) (map[string]*unhidra.Message, error) {
	known := map[string]*unhidra.Message{}
	seen := map[string]bool{}
	var ids []string
	for _, i := range idx {
		if c := reqs[i].ClientID; c != "" && !seen[c] {
			seen[c] = true
			ids = append(ids, c)
		}
	}
	// The senders constrain the key's leading column, so both databases
	// look keys up in the primary key instead of scanning the table.
	senders := distinctSenders(reqs, idx)
	for chunk := range slices.Chunk(ids, appendChunk) {
		args := make([]any, 0, len(senders)+1+len(chunk))
		for _, s := range senders {
			args = append(args, s)
		}
		args = append(args, conv)
		for _, c := range chunk {
			args = append(args, c)
		}
		rows, err := tx.QueryContext(ctx, db.q(`SELECT k.sender_id, k.client_id, m.id, m.conversation_id, m.seq, m.sender_id, m.body,
			m.created_at, m.edited_at, m.deleted_at
			FROM message_idempotency k JOIN messages m ON m.id = k.message_id
			WHERE k.sender_id IN (?`+strings.Repeat(", ?", len(senders)-1)+`) AND k.conversation_id = ?
			AND k.client_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`), args...)
		if err != nil {
			return nil, fmt.Errorf("check idempotency: %w", err)
		}
		for rows.Next() {
			var sender, client string
			var m unhidra.Message
			var created, edited, deleted int64
			if err := rows.Scan(&sender, &client, &m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.Body, &created, &edited, &deleted); err != nil {
				rows.Close()
				return nil, fmt.Errorf("check idempotency: %w", err)
			}
			m.CreatedAt, m.EditedAt, m.DeletedAt = store.FromUnixMilli(created), store.FromUnixMilli(edited), store.FromUnixMilli(deleted)
			known[sender+"\x00"+client] = &m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("check idempotency: %w", err)
		}
	}
	return known, nil
}

// advanceReadPositions moves each sender's read position in conv to the
// seq of its last message in the batch: what one sends, one has read.
func (db *DB) advanceReadPositions(ctx context.Context, tx *sql.Tx, conv string, readTo map[string]int64) error {
	senders := slices.Sorted(maps.Keys(readTo))
	for chunk := range slices.Chunk(senders, appendChunk) {
		var cases strings.Builder
		args := make([]any, 0, 3*len(chunk)+1)
		for _, s := range chunk {
			cases.WriteString(" WHEN ? THEN CAST(? AS BIGINT)")
			args = append(args, s, readTo[s])
		}
		args = append(args, conv)
		for _, s := range chunk {
			args = append(args, s)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE conversation_members SET last_read_seq = CASE member_id`+cases.String()+
			` ELSE last_read_seq END WHERE conversation_id = ? AND member_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`), args...); err != nil {
			return fmt.Errorf("advance read positions: %w", err)
		}
	}
	return nil
}

// MessageByID returns a message, or protocol.ErrNotFound.
func (db *DB) MessageByID(ctx context.Context, id string) (*unhidra.Message, error) {
	m, err := scanMessage(db.read.QueryRowContext(ctx, db.q(`SELECT `+messageColumns+` FROM messages WHERE id = ?`), id))
	if err != nil {
		return nil, db.notFound(err, "message")
	}
	return m, nil
}

// EditMessage replaces a live message's body. protocol.ErrNotFound.
func (db *DB) EditMessage(ctx context.Context, id, body string) (*unhidra.Message, error) {
	return db.changeMessage(ctx, id, `body = ?, edited_at = ?`, body, db.now().UnixMilli())
}

// DeleteMessage soft-deletes a message. protocol.ErrNotFound.
func (db *DB) DeleteMessage(ctx context.Context, id string) (*unhidra.Message, error) {
	return db.changeMessage(ctx, id, `body = '', deleted_at = ?`, db.now().UnixMilli())
}

func (db *DB) changeMessage(ctx context.Context, id, set string, args ...any) (*unhidra.Message, error) {
	var m *unhidra.Message
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE messages SET `+set+` WHERE id = ? AND deleted_at = 0`), append(args, id)...)
		if err != nil {
			return fmt.Errorf("update message: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such message.")
		}
		m, err = scanMessage(tx.QueryRowContext(ctx, db.q(`SELECT `+messageColumns+` FROM messages WHERE id = ?`), id))
		return err
	})
	return m, err
}

// limitLiteral returns the LIMIT to write into a query's text for n rows:
// n itself for the usual page sizes, else the next of a few steps, so that
// the statement cache holds a handful of texts. A bound LIMIT would cost a
// compilation per call: SQLite (3.47 and later) plans with a bound LIMIT's
// value and so prepares such a statement again on every execution that
// binds it. The caller stops reading after n rows.
func limitLiteral(n int) int {
	for _, step := range [...]int{2, 11, 26, 51, 101, 201, 501, 1001} {
		if n <= step {
			return step
		}
	}
	return n
}

// History pages a conversation's messages by seq; see store.ChatStore.
func (db *DB) History(ctx context.Context, q store.HistoryQuery) ([]*unhidra.Message, bool, error) {
	limit := store.Clamp(q.Limit, 50, 200)
	where, args := []string{"conversation_id = ?"}, []any{q.ConversationID}
	if q.Before > 0 {
		where, args = append(where, "seq < ?"), append(args, q.Before)
	}
	order := "DESC"
	if q.After > 0 || q.Forward {
		where, args, order = append(where, "seq > ?"), append(args, q.After), "ASC"
	}
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT `+messageColumns+` FROM messages WHERE `+
		strings.Join(where, " AND ")+` ORDER BY seq `+order+` LIMIT `+strconv.Itoa(limitLiteral(limit+1))), args...)
	if err != nil {
		return nil, false, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	out := make([]*unhidra.Message, 0, limit+1)
	for len(out) <= limit && rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, false, fmt.Errorf("scan message: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("history: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	if order == "DESC" {
		slices.Reverse(out)
	}
	return out, more, nil
}

// DeleteIdempotencyKeys forgets client IDs recorded before cutoff.
func (db *DB) DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := db.write.ExecContext(ctx, db.q(`DELETE FROM message_idempotency WHERE created_at < ?`), store.UnixMilli(cutoff))
	if err != nil {
		return 0, fmt.Errorf("delete idempotency keys: %w", err)
	}
	return res.RowsAffected()
}
