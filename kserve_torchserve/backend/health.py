"""Model readiness from TorchServe's answers while it runs: one round of questions every few seconds.

- TorchServe not answering (a stopped or hung JVM): every model not ready at once, and no
  restart (the process lives; it may resume); one line when it stops answering and one
  when it answers again, however long it lasts.
- A model with no READY worker: TorchServe is restarting them (a worker crashed, was
  killed, or timed out) and queues the model's requests meanwhile, so the model stays
  ready for ``WORKER_RESTART_GRACE_S``; past that, not ready (one line) until a worker is
  READY again. Refusing its requests at once would turn a restart of a second or two into
  503s for clients that TorchServe would have answered.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Protocol, Sequence

logger = logging.getLogger(__name__)

# TorchServe restarts a crashed worker after 1 s of backoff, and loading takes a few more;
# the next ones come after 1, 2, 3, 5 s... A model is only "not ready" once that is clearly
# not going to end soon.
WORKER_RESTART_GRACE_S = 15.0


class Readiness(Protocol):
    name: str
    ready: bool
    failure: str | None  # why its workers could not load: left out until TorchServe restarts


State = tuple[Readiness, "bool | None"]  # READY workers (True), none (False), TorchServe not answering (None)


class Health:
    def __init__(self, ask: Callable[[Readiness], Awaitable[bool | None]], clock: Callable[[], float],
                 timeout_s: float) -> None:
        self._ask = ask  # one model's state
        self._clock = clock
        self._timeout_s = timeout_s  # how long an answer may take (for the log line)
        self.answering = True  # TorchServe answered the last round
        self._no_worker_since: dict[int, float] = {}  # id(model) -> when first seen without a READY worker

    def reset(self) -> None:
        """A new TorchServe: it answers, and no model has been waiting for a worker."""
        self.answering = True
        self._no_worker_since.clear()

    async def round(self, served: Sequence[Readiness]) -> list[State]:
        states: list[State] = []
        for index, model in enumerate(served):
            state = await self._ask(model)
            states.append((model, state))
            if state is None:  # not answering: asking about the others would only wait longer
                states += [(other, None) for other in served[index + 1:]]
                break
        return states

    def follow(self, states: list[State]) -> None:
        """Readiness from one round's answers (see the module docstring)."""
        answering = all(state is not None for _, state in states)
        if answering != self.answering:
            self.answering = answering
            if answering:
                logger.warning("TorchServe answers again; readiness follows its workers")
            else:
                logger.error("TorchServe is not answering (describe took over %.0fs): not ready until it does",
                             self._timeout_s)
        now = self._clock()
        current = {id(model) for model, _ in states}
        self._no_worker_since = {key: at for key, at in self._no_worker_since.items() if key in current}
        for model, state in states:
            if not answering:
                model.ready = False
            elif state:
                self._no_worker_since.pop(id(model), None)
                model.ready = True
            else:
                since = self._no_worker_since.setdefault(id(model), now)
                if model.ready and now - since >= WORKER_RESTART_GRACE_S:
                    logger.error("model %s has had no READY worker for %.0fs (TorchServe keeps restarting them: "
                                 "see its log): not ready until one is", model.name, now - since)
                    model.ready = False
