"""Text with no store and no model: the keyword tokenizer and stopwords (lexical), sentence
spans (sentences). Everything above reads words and sentences through these."""
