package qdrantstore

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// encodeStoredQuery appends to b the ScrollPoints request of nothingStored:
// one point, without payload or vectors, whose user_id is one of the units'
// (each once, in the units' order) and whose doc_id is one of theirs. Tests
// check the bytes are those the go-client's message marshals to.
func encodeStoredQuery(b []byte, collection string, units []unit) []byte {
	users := make([]string, 0, 8)
	for i := range units {
		if !slices.Contains(users, units[i].doc.userID) {
			users = append(users, units[i].doc.userID)
		}
	}
	user := func(i int) string { return users[i] }
	doc := func(i int) string { return units[i].doc.docID }
	_, _, _, userCond := matchKeywordsSizes(keyUserID, len(users), user)
	_, _, _, docCond := matchKeywordsSizes(keyDocID, len(units), doc)
	if collection != "" {
		b = appendString(b, fScrollCollection, collection)
	}
	b = appendLen(b, fScrollFilter, userCond+docCond)
	b = appendMatchKeywords(b, keyUserID, len(users), user)
	b = appendMatchKeywords(b, keyDocID, len(units), doc)
	b = appendVarint(appendTag(b, fScrollLimit, protowire.VarintType), 1)
	b = appendVarint(appendTag(appendLen(b, fScrollWithPayload, 2), fSelectorEnable, protowire.VarintType), 0)
	return appendVarint(appendTag(appendLen(b, fScrollWithVectors, 2), fSelectorEnable, protowire.VarintType), 0)
}

// matchKeywordsSizes returns the sizes of the parts of the must condition
// of appendMatchKeywords: its strings, Match, FieldCondition and the whole
// condition.
func matchKeywordsSizes(key string, n int, keyword func(i int) string) (strs, match, field, cond int) {
	for i := range n {
		strs += fieldSize(len(keyword(i)))
	}
	match = fieldSize(strs)
	field = fieldSize(len(key)) + fieldSize(match)
	return strs, match, field, fieldSize(fieldSize(field))
}

// appendMatchKeywords appends a must condition: key matches one of the n
// keywords keyword(i).
func appendMatchKeywords(b []byte, key string, n int, keyword func(i int) string) []byte {
	strs, match, field, _ := matchKeywordsSizes(key, n, keyword)
	b = appendLen(b, fFilterMust, fieldSize(field))
	b = appendLen(b, fConditionField, field)
	b = appendString(b, fFieldKey, key)
	b = appendLen(b, fFieldMatch, match)
	b = appendLen(b, fMatchKeywords, strs)
	for i := range n {
		b = appendString(b, fRepeatedString, keyword(i))
	}
	return b
}
