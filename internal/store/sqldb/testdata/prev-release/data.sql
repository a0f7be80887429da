-- Data in the previous release's schema (the same for both stores).
INSERT INTO users (id, name, name_key, display_name, role, password_hash, created_at, updated_at)
VALUES ('u_ann', 'ann', 'ann', 'Ann', 'admin', '$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g', 1765000000000, 1765000000000);
INSERT INTO users (id, name, name_key, role, created_at, updated_at)
VALUES ('u_bob', 'bob', 'bob', 'member', 1765000000000, 1765000000000);
INSERT INTO conversations (id, kind, name, name_key, created_by, last_seq, created_at, updated_at)
VALUES ('c_ops', 'public', 'ops', 'ops', 'u_ann', 2, 1765000000000, 1765000000000);
INSERT INTO conversation_members (conversation_id, member_id, role, last_read_seq, joined_at)
VALUES ('c_ops', 'u_ann', 'owner', 2, 1765000000000), ('c_ops', 'u_bob', 'member', 1, 1765000000000);
INSERT INTO messages (conversation_id, seq, id, sender_id, body, created_at)
VALUES ('c_ops', 1, 'm_1', 'u_ann', 'before the upgrade', 1765000000001), ('c_ops', 2, 'm_2', 'u_bob', 'still here after it', 1765000000002);
INSERT INTO devices (id, owner_id, name, type, key_id, key_hash, key_created_at, created_at, changed_at)
VALUES ('d_boiler', 'u_ann', 'boiler', 'esp32', 'k_boiler', 'hash', 1765000000000, 1765000000000, 1765000000000);
