"""mfsg: a theory-and-verification toolkit for learned uplink MAC protocols as a dynamic
multi-follower Stackelberg game (see SPEC.md)."""

__version__ = "0.1.0"
