"""Start keys: a workflow start that a retried request cannot make twice (optional).

A caller that may send the same start twice (a client retrying after a
timeout, a webhook delivered again) passes an idempotency key. The first call
with a key starts the run and records the key for :data:`START_KEY_WINDOW`;
a later call with that key, within the window, starts nothing and is told the
instance name of the run the key started, whether that run is still live or
has finished. Keys belong to a workflow name: two workflows may use the same
key. The key is recorded in the transaction that creates the run, so of two
racing calls exactly one starts it.
"""

from __future__ import annotations

from datetime import timedelta

from cereal import errors
from cereal.checks import names

START_KEY_WINDOW = timedelta(hours=24)
"""How long a start key is remembered after the run it started was created."""

START_KEY_WINDOW_S = START_KEY_WINDOW.total_seconds()


def check_start_key(key: object) -> str:
    """Return ``key`` if it is a usable idempotency key (the rules of a name), else raise.

    Raises:
        TypeError: it is not a str.
        ValueError: it is empty, longer than 255 characters, or holds a
            control or invisible character.
    """
    return names.check_name(key, what="idempotency key")


def _not_offered(driver: object) -> errors.DriverError:
    return errors.NotOfferedError(f"{type(driver).__name__} does not offer idempotency keys")


class StartKeyStore:
    """Workflow starts guarded by an idempotency key.

    Optional: a driver without start keys inherits a default that raises
    :class:`~cereal.errors.DriverError`. Expired keys are deleted by
    :meth:`MaintenanceStore.trim_history`, in bounded batches.
    """

    async def enqueue_workflow_once(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        idempotency_key: str,
        *,
        traceparent: str | None = None,
    ) -> str | None:
        """Start the run unless ``idempotency_key`` started one within the window.

        The window is :data:`START_KEY_WINDOW`, and keys are per ``workflow_name``.
        ``traceparent`` is stored with a run this call starts (as
        ``enqueue_workflow``).

        Returns:
            ``None`` when this call started the run; else the instance name of
            the run the key started earlier (nothing is written).

        Raises:
            WorkflowInstanceExistsError: the key is new, but a live instance
                has these names (the key is not recorded).
        """
        raise _not_offered(self)
