"""The joint index and the statistics: hit/no-hit on identity tokens, counts by one method.

``services.index.service.IndexService`` folds the verified ingress stream into an embedded SQLite
database (``services.index.store``): index entries (tokens, never personal fields) and statistical
facts, with the consumed Kafka offsets in the same transaction. Lookups are answered by
``services.index.lookup`` over Kafka, HTTP and the command line; statistics are read by
``services.index.stats``.
"""
