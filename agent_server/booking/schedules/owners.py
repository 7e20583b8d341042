"""Schedule owners: ``ScheduleOwner`` (a specialist or an agent) and ``owner_of`` a row."""

from __future__ import annotations

from dataclasses import dataclass

from agent_server.booking.models import Schedule


@dataclass(frozen=True)
class ScheduleOwner:
    """Who owns a schedule: exactly one of a specialist or an agent."""

    specialist_id: int | None = None
    agent_id: int | None = None

    def __post_init__(self) -> None:
        if (self.specialist_id is None) == (self.agent_id is None):
            raise ValueError("a schedule owner is exactly one of specialist_id or agent_id")

    @classmethod
    def agent(cls, agent_id: int) -> ScheduleOwner:
        return cls(agent_id=agent_id)

    @classmethod
    def specialist(cls, specialist_id: int) -> ScheduleOwner:
        return cls(specialist_id=specialist_id)

    def owns(self, schedule: Schedule) -> bool:
        return self.is_owner(schedule.agent_id, schedule.specialist_id)

    def is_owner(self, agent_id: int | None, specialist_id: int | None) -> bool:
        """Whether this is the owner of a schedule owned by ``agent_id`` or ``specialist_id``."""
        if self.agent_id is not None:
            return agent_id == self.agent_id
        return specialist_id == self.specialist_id


def owner_of(schedule: Schedule) -> ScheduleOwner:
    """The owner of a schedule row."""
    return ScheduleOwner(specialist_id=schedule.specialist_id, agent_id=schedule.agent_id)
