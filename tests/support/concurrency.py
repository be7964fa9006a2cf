"""Run one piece of work per user in parallel threads, each with its own database connection."""

import threading

from django.db import connections


def race(users, work):
    """Run ``work(user)`` for every user at once (a barrier releases them together).

    Returns ``(results by username, errors)``; each thread closes its connections when done.
    """
    barrier = threading.Barrier(len(users))
    results, errors = {}, []

    def run(user):
        try:
            barrier.wait(timeout=30)
            results[user.username] = work(user)
        except Exception as exc:  # collected for the caller to assert empty
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors
