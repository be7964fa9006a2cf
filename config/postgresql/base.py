"""Django's PostgreSQL backend with a health check that costs no round trip.

``CONN_HEALTH_CHECKS`` (on in config/settings.py, so a persistent connection broken by a database outage
is replaced on its next request instead of failing it) makes Django's backend send ``SELECT 1`` at the
start of every request that touches the database: one more round trip per request, on the queue's
next and judgement a tenth of all their round trips (docs/benchmarks/queue.md). Here an idle connection
is first checked by whether its socket has anything to read: a server that closed the connection
(restart, outage, idle timeout, a proxy reset) leaves an end of file or an error message there, and a
healthy idle connection leaves nothing. Only a connection with something to read gets Django's own
check (``SELECT 1``, which then fails and the connection is replaced). The same test urllib3 uses for
dropped keep-alive connections. tests/system/test_db_backend.py, and the outage test
(tests/system/test_faults_outage.py), check that a broken connection is still replaced.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


def _has_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        conn = self.connection
        if (
            conn is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and not conn.closed
            and conn.pgconn.status == pq.ConnStatus.OK
            and conn.info.transaction_status == pq.TransactionStatus.IDLE
            and not _has_input(conn.fileno())
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
