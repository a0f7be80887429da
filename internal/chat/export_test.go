package chat

import "hash/maphash"

// WriterOf returns the index of the group-commit writer conv is committed by.
func WriterOf(s *Service, conv string) int {
	return int(maphash.String(s.seed, conv) % uint64(len(s.queues)))
}
