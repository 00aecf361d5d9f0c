"""The oracle: what the server must do with a connection's frames, worked out from the frames.

Two layers decide, as in the server. The websocket layer (uvicorn over ``websockets``) checks
each frame as it arrives: RFC 6455 itself (1002), the size limit of one websocket message
(1009), UTF-8 in text messages (1007). The Bokeh framing, modelled by
:class:`fuzz.framing.Framing` (not app_server's ``Receiver``), checks the sequence of messages.
Each complete message must get exactly one reply naming it, of a type that fits its type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fuzz.cases import LIMIT
from fuzz.framing import (
    ERROR,
    OK,
    PATCH_DOC,
    PULL_DOC_REPLY,
    PULL_DOC_REQ,
    PUSH_DOC,
    SERVER_INFO_REPLY,
    SERVER_INFO_REQ,
    BokehMessage,
    Framing,
    Violation,
)
from fuzz.rawws import CONTINUATION, TEXT, WireFrame

__all__ = ["REPLIES", "Prediction", "predict", "websocket_violation"]

# the reply types that fit each request; any other message type closes the connection (1002)
REPLIES: dict[str, frozenset[str]] = {
    PULL_DOC_REQ: frozenset({PULL_DOC_REPLY, ERROR}),
    SERVER_INFO_REQ: frozenset({SERVER_INFO_REPLY}),
    PATCH_DOC: frozenset({OK, ERROR}),
    PUSH_DOC: frozenset({OK, ERROR}),
}
ONLY_ERROR = frozenset({ERROR})


@dataclass
class Prediction:
    """What the server must do with a connection's frames."""

    replies: list[tuple[str, frozenset[str]]]  # (msgid, reply types that fit), in order
    close: int | None = None  # the code the server must close with; None: it stays open
    reason: str = ""  # why, when the Bokeh framing (not the websocket layer) closes
    # uvicorn's websocket layer checks frames as they arrive, ahead of the app: a later frame
    # that breaks RFC 6455 or the size limit may close the connection first, with its own code
    racing: set[int] = field(default_factory=set)

    @property
    def by_framing(self) -> bool:
        return bool(self.reason)

    @property
    def codes(self) -> set[int]:
        return set() if self.close is None else {self.close, *self.racing}


def websocket_violation(frame: WireFrame, fragments: list[bytes], limit: int = LIMIT) -> int | None:
    """The close code the websocket layer answers ``frame`` with, if any."""
    if frame.violation is not None:
        return frame.violation
    if sum(map(len, fragments)) > limit:
        return 1009
    if frame.fin and frame.opcode in (TEXT, CONTINUATION):
        try:
            b"".join(fragments).decode()
        except UnicodeDecodeError:
            return 1007
    return None


def predict(
    frames: Sequence[WireFrame], labels: dict[str, frozenset[str]], limit: int = LIMIT
) -> Prediction:
    """The websocket layer's checks, then the Bokeh framing's."""
    framing = Framing(limit)
    prediction = Prediction([])
    fragments: list[bytes] = []
    opcode = TEXT
    for frame in frames:
        if frame.opcode != CONTINUATION:
            opcode, fragments = frame.opcode, []
        fragments.append(frame.payload)
        code = websocket_violation(
            WireFrame(opcode, b"", frame.fin, violation=frame.violation), fragments, limit
        )
        if prediction.close is not None:  # the connection is failing: only a race remains
            if code is not None:
                prediction.racing.add(code)
                if code != 1007:
                    return prediction
            continue
        if code is not None:
            prediction.close = code
            if code != 1007:
                return prediction
            # UTF-8 is checked when a message is handed to the app: a size or framing error
            # further on, which the frame parser sees first, may still close the connection
            continue
        if not frame.fin:
            continue
        data = b"".join(fragments)
        result = framing.feed(data.decode() if opcode == TEXT else data)
        if isinstance(result, Violation):
            prediction.close, prediction.reason = result.code, result.reason
        elif isinstance(result, BokehMessage) and result.msgtype not in REPLIES:
            # a type only a server sends, or none: the client broke the protocol
            prediction.close, prediction.reason = 1002, "does not accept"
        elif isinstance(result, BokehMessage):
            allowed = labels.get(result.msgid) or REPLIES.get(result.msgtype, ONLY_ERROR)
            prediction.replies.append((result.msgid, allowed))
    return prediction
