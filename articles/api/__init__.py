"""The REST API over feeds, articles, topics, interactions, similarity, search and recommendations."""
