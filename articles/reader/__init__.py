"""The reader: server-rendered pages at / for a signed-in person (For you, Latest, Search, an article)."""
