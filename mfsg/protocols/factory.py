"""Build a baseline of model §6 by its command-line name."""

from __future__ import annotations

from mfsg.config import ConfigError
from mfsg.protocols.aloha import Aloha, AlohaConfig
from mfsg.protocols.base import Protocol
from mfsg.protocols.genie import Genie
from mfsg.protocols.speculative import SpeculativeSrGrant
from mfsg.protocols.sr_grant import SrGrant

PROTOCOLS = ("genie", "sr-grant", "sr-grant-speculative", "aloha")


def make_protocol(name: str, *, seed: int = 0, q: float | None = None) -> Protocol:
    """The baseline named ``name`` (one of :data:`PROTOCOLS`); ``q``: ALOHA's transmit probability."""
    if name == "genie":
        return Genie(seed=seed)
    if name == "sr-grant":
        return SrGrant(seed=seed)
    if name == "sr-grant-speculative":
        return SpeculativeSrGrant(seed=seed)
    if name == "aloha":
        return Aloha(AlohaConfig(q=q), seed=seed)
    raise ConfigError(f"protocol={name!r} is invalid: allowed one of {', '.join(PROTOCOLS)}")
