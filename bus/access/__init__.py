"""Who may do what on the broker: principals and ACLs derived from the agreements file.

``bus.access.acl`` derives the principals and their grants (pure); ``bus.access.apply`` makes
the broker match them; ``bus.access.credentials`` keeps every principal's password in a private
``client.properties``; ``bus.access.kit`` writes a partner's onboarding kit; ``bus.access.tls``
makes the local broker's CA and certificate; ``bus.access.files`` writes private files.
"""
