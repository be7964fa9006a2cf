"""The only layer that changes annotation state. Views, API, admin, commands and tasks call it.

* :mod:`.queue`   — leases and judgements (the pull queue); its SQL is :mod:`.queue_sql`.
* :mod:`.catalog` — tuples, images and pairs.
* :mod:`.people`  — users, roles and expertise.
* :mod:`.importing` — prompt files (JSON prompt lists, JSONL tuples) into tuples, all or nothing.
"""
