"""Process metrics in the Prometheus text format, without a client library.

Counters are plain integers bumped on the hot path; the text is built only when
``/metrics`` is scraped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

__all__ = ["CALLBACK_BUCKETS", "Metrics"]

CALLBACK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Metrics:
    """The server's counters; one instance per ``AppServer``."""

    def __init__(self) -> None:
        self.sessions_created: dict[str, int] = defaultdict(int)
        self.sessions_destroyed: dict[str, int] = defaultdict(int)
        self.websocket_opened = 0
        self.websocket_closed = 0
        self.websocket_refused = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.callback_errors = 0
        self.slow_clients_dropped = 0
        self.callback_count = 0
        self.callback_seconds = 0.0
        self.callback_buckets = [0] * len(CALLBACK_BUCKETS)

    def observe_callback(self, seconds: float) -> None:
        self.callback_count += 1
        self.callback_seconds += seconds
        for index, bound in enumerate(CALLBACK_BUCKETS):
            if seconds <= bound:
                self.callback_buckets[index] += 1
                break

    def render(self, open_sessions: dict[str, int], backlog: int) -> str:
        """The exposition text; ``open_sessions`` and ``backlog`` are read at scrape time."""
        lines: list[str] = []

        def metric(
            name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
        ) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        def per_app(values: dict[str, int]) -> list[tuple[str, float]]:
            return [(f'{{app="{_escape(app)}"}}', count) for app, count in sorted(values.items())]

        metric("app_server_sessions_open", "gauge", "Sessions held now.", per_app(open_sessions))
        metric(
            "app_server_sessions_created_total",
            "counter",
            "Sessions created.",
            per_app(self.sessions_created),
        )
        metric(
            "app_server_sessions_destroyed_total",
            "counter",
            "Sessions discarded.",
            per_app(self.sessions_destroyed),
        )
        open_ws = self.websocket_opened - self.websocket_closed
        metric(
            "app_server_websockets_open", "gauge", "Open websocket connections.", [("", open_ws)]
        )
        metric(
            "app_server_websockets_opened_total",
            "counter",
            "Websocket connections accepted.",
            [("", self.websocket_opened)],
        )
        metric(
            "app_server_websockets_refused_total",
            "counter",
            "Websocket handshakes refused (origin, token, session).",
            [("", self.websocket_refused)],
        )
        metric(
            "app_server_messages_total",
            "counter",
            "Protocol messages by direction.",
            [('{direction="in"}', self.messages_in), ('{direction="out"}', self.messages_out)],
        )
        metric(
            "app_server_bytes_total",
            "counter",
            "Websocket payload bytes by direction.",
            [('{direction="in"}', self.bytes_in), ('{direction="out"}', self.bytes_out)],
        )
        metric(
            "app_server_callback_errors_total",
            "counter",
            "Callbacks that raised.",
            [("", self.callback_errors)],
        )
        metric(
            "app_server_slow_clients_dropped_total",
            "counter",
            "Connections closed because their outbound queue was full.",
            [("", self.slow_clients_dropped)],
        )
        metric(
            "app_server_outbound_backlog_messages",
            "gauge",
            "Messages queued for clients, summed over connections.",
            [("", backlog)],
        )
        cumulative, buckets = 0, []
        for bound, count in zip(CALLBACK_BUCKETS, self.callback_buckets, strict=True):
            cumulative += count
            buckets.append((f'_bucket{{le="{bound}"}}', cumulative))
        buckets.append(('_bucket{le="+Inf"}', self.callback_count))
        name = "app_server_callback_duration_seconds"
        lines.append(f"# HELP {name} Time spent running session callbacks.")
        lines.append(f"# TYPE {name} histogram")
        lines.extend(f"{name}{suffix} {_number(value)}" for suffix, value in buckets)
        lines.append(f"{name}_sum {_number(self.callback_seconds)}")
        lines.append(f"{name}_count {self.callback_count}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
