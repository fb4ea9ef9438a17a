package pipeline

// CorpusTexts gives the external test package the texts of the
// repository's corpora.
var CorpusTexts = corpusTexts
