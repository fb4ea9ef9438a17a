package pipeline

import (
	"fmt"
	"strconv"
	"strings"
)

// Token limits of CONTRACT §1.
const (
	maxUserIDLen     = 128
	maxCollectionLen = 64
)

// ValidUserID reports whether s is a valid <user_id> (1-128 chars of A-Z a-z 0-9 _ -).
func ValidUserID(s string) bool {
	if len(s) == 0 || len(s) > maxUserIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// ValidCollection reports whether s is a valid <collection> (1-64 chars of a-z 0-9 _ -, starting with a letter).
func ValidCollection(s string) bool {
	if len(s) == 0 || len(s) > maxCollectionLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// ParseSubject splits "<prefix>.<kind>.<user_id>.<collection>" (prefix may itself contain dots, e.g. "acme.rag") and validates the two tokens; kind is e.g. "ingest". ok=false when a token is missing, extra or invalid.
func ParseSubject(prefix, kind, subject string) (userID, collection string, ok bool) {
	userID, collection, problem := parseSubject(prefix, kind, subject)
	if problem != "" {
		return "", "", false
	}
	return userID, collection, true
}

// parseSubject is ParseSubject that says what is wrong: problem is empty when
// the subject is valid, else a human-readable reason.
func parseSubject(prefix, kind, subject string) (userID, collection, problem string) {
	rest, found := cutSubjectPrefix(subject, prefix, kind)
	if !found {
		return "", "", fmt.Sprintf("subject %s does not start with %q", quoteForReason(subject), subjectHead(prefix, kind))
	}
	userID, collection, found = strings.Cut(rest, ".")
	switch {
	case !found:
		return "", "", fmt.Sprintf("subject %s has no <collection> token", quoteForReason(subject))
	case strings.IndexByte(collection, '.') >= 0:
		return "", "", fmt.Sprintf("subject %s has tokens after <collection>", quoteForReason(subject))
	case !ValidUserID(userID):
		return "", "", fmt.Sprintf("user_id %s in the subject is not 1-128 characters of A-Z a-z 0-9 _ -", quoteForReason(userID))
	case !ValidCollection(collection):
		return "", "", fmt.Sprintf("collection %s in the subject is not 1-64 characters of a-z 0-9 _ - starting with a letter", quoteForReason(collection))
	}
	return userID, collection, ""
}

// cutSubjectPrefix returns what follows "<prefix>.<kind>." in subject, without
// building that string. An empty prefix means subjects start with the kind.
func cutSubjectPrefix(subject, prefix, kind string) (rest string, found bool) {
	if prefix != "" {
		if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix || subject[len(prefix)] != '.' {
			return "", false
		}
		subject = subject[len(prefix)+1:]
	}
	if len(subject) <= len(kind) || subject[:len(kind)] != kind || subject[len(kind)] != '.' {
		return "", false
	}
	return subject[len(kind)+1:], true
}

func subjectHead(prefix, kind string) string {
	if prefix == "" {
		return kind + "."
	}
	return prefix + "." + kind + "."
}

// quoteForReason quotes a value for a rejection reason, shortening long ones so
// that a reason stays a readable one-liner (it travels in a NATS header).
func quoteForReason(s string) string {
	short, more := shortenForReason(s)
	if more == 0 {
		return strconv.Quote(short)
	}
	return fmt.Sprintf("%q…(%d bytes)", short, len(s))
}

// numberForReason is quoteForReason for a JSON number literal, left unquoted.
func numberForReason(s string) string {
	short, more := shortenForReason(s)
	if more == 0 {
		return short
	}
	return fmt.Sprintf("%s…(%d digits)", short, len(s))
}

// shortenForReason cuts s to at most 80 bytes, on a UTF-8 boundary, and
// says how many bytes were cut.
func shortenForReason(s string) (string, int) {
	const maxLen = 80
	if len(s) <= maxLen {
		return s, 0
	}
	cut := maxLen
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut], len(s) - cut
}
