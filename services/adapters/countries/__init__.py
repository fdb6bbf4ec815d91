"""One module per country, named by its ISO 3166-1 alpha-2 code, each defining ``MAPPING``.

See ``services.adapters.mapping`` for the contract and ``rs.py`` for a full example.
"""
