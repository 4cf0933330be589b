"""Data 360 as a source of agent actions (SPEC §11): object discovery, token exchange and
Query API v2, and an incremental sync of tool-call usage events with their interaction
steps and sessions into a sink."""

from __future__ import annotations

from connector.data360.client import Data360Client
from connector.data360.discovery import Data360Schema, DiscoveredObject, discover
from connector.data360.sync import SOURCE, Data360Source

__all__ = [
    "SOURCE",
    "Data360Client",
    "Data360Schema",
    "Data360Source",
    "DiscoveredObject",
    "discover",
]
