"""Timeline history: which timelines lead to which, and where they branched. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgharbor.domain.wal import parse_lsn
from pgharbor.errors import WalValidationError


@dataclass(frozen=True)
class TimelineHistory:
    """The history of ``timeline``: ``ends[t]`` is the LSN where ancestor ``t`` ended."""

    timeline: int
    ends: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, timeline: int, text: str) -> TimelineHistory:
        ends: dict[int, int] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            try:
                ends[int(parts[0])] = parse_lsn(parts[1])
            except (IndexError, ValueError):
                raise WalValidationError(
                    f"timeline {timeline} history: bad line {line!r}"
                ) from None
        return cls(timeline, ends)

    def reaches(self, timeline: int, lsn: int) -> bool:
        """Can recovery that starts on ``timeline`` at ``lsn`` follow this history?"""
        if timeline == self.timeline:
            return True
        end = self.ends.get(timeline)
        return end is not None and lsn <= end
