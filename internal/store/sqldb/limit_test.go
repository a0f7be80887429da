package sqldb

import "testing"

// The LIMIT written into a query covers the rows asked for, and the whole
// range of page sizes maps to a handful of statement texts.
func TestLimitLiteral(t *testing.T) {
	texts := map[int]bool{}
	for n := 1; n <= 1001; n++ {
		l := limitLiteral(n)
		if l < n {
			t.Fatalf("limitLiteral(%d) = %d: fewer rows than asked for", n, l)
		}
		texts[l] = true
	}
	if len(texts) > 8 {
		t.Fatalf("%d distinct limits for 1..1001: %v", len(texts), texts)
	}
	for _, n := range []int{51, 101, 201} { // default and common pages (+1 to see "more") are exact
		if limitLiteral(n) != n {
			t.Errorf("limitLiteral(%d) = %d", n, limitLiteral(n))
		}
	}
}
