package auth

import (
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/frequency"
)

// strengthMaxRunes bounds the prefix the estimator looks at: its matching is
// superlinear (about 1 s for 256 characters), and a password whose first
// 64 characters are guessable is weak anyway.
const strengthMaxRunes = 64

var (
	commonOnce sync.Once
	common     map[string]struct{}
)

// commonPassword reports whether pw (ignoring case) is on zxcvbn's list of
// common passwords.
func commonPassword(pw string) bool {
	commonOnce.Do(func() {
		list := frequency.FrequencyLists["passwords"]
		common = make(map[string]struct{}, len(list))
		for _, p := range list {
			common[p] = struct{}{}
		}
	})
	_, ok := common[strings.ToLower(pw)]
	return ok
}

// estimateStrength returns pw's zxcvbn score (0–4) and, for a weak one, the
// patterns that made it guessable, for the error message.
func estimateStrength(pw, username string) (int, string) {
	if utf8.RuneCountInString(pw) > strengthMaxRunes {
		i := 0
		for n := range pw {
			if i == strengthMaxRunes {
				pw = pw[:n]
				break
			}
			i++
		}
	}
	var inputs []string
	if username != "" {
		inputs = []string{strings.ToLower(username)}
	}
	r := zxcvbn.PasswordStrength(pw, inputs)
	seen := map[string]bool{}
	for _, m := range r.Sequence {
		if d := describePattern(m.Pattern, m.DictionaryName); d != "" {
			seen[d] = true
		}
	}
	var parts []string
	for d := range seen {
		parts = append(parts, d)
	}
	sort.Strings(parts)
	if len(parts) > 2 {
		parts = parts[:2]
	}
	if len(parts) == 0 {
		parts = []string{"too short for its variety of characters"}
	}
	return r.Score, strings.Join(parts, ", ")
}

func describePattern(pattern, dict string) string {
	switch pattern {
	case "dictionary":
		switch dict {
		case "passwords":
			return "a common password"
		case "user_inputs":
			return "your name"
		case "english_wikipedia", "us_tv_and_film":
			return "a common word"
		case "surnames", "male_names", "female_names":
			return "a common name"
		}
		return "a dictionary word"
	case "spatial":
		return "a keyboard pattern"
	case "repeat":
		return "repeated characters"
	case "sequence":
		return "a sequence like abc or 123"
	case "regex":
		return "a year"
	case "date":
		return "a date"
	}
	return ""
}
