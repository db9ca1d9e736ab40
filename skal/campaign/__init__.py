"""Real annotation campaigns: a persistent, resumable, crash-safe :class:`Campaign`,
the round engine shared with simulations, and CSV / Label Studio interop."""

from .campaign import Campaign
from .store import CampaignDatabaseError
from .ids import PoolChangedError

__all__ = ["Campaign", "CampaignDatabaseError", "PoolChangedError"]
