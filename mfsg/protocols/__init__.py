"""Rule-based baselines of model §6 acting on :class:`~mfsg.env.BatchedEnv`: genie, SR/grant,
SR/grant with speculative grants, slotted ALOHA."""

from mfsg.protocols.aloha import Aloha, AlohaConfig
from mfsg.protocols.base import Protocol
from mfsg.protocols.factory import PROTOCOLS, make_protocol
from mfsg.protocols.genie import Genie
from mfsg.protocols.runner import run_protocol
from mfsg.protocols.speculative import SpeculativeSrGrant
from mfsg.protocols.sr_grant import SrGrant

__all__ = [
    "Aloha", "AlohaConfig", "Genie", "PROTOCOLS", "Protocol", "SpeculativeSrGrant", "SrGrant", "make_protocol",
    "run_protocol",
]
