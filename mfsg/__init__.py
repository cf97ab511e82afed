"""mfsg: a theory-and-verification toolkit for learned uplink MAC protocols as a dynamic
multi-follower Stackelberg game (see the book chapter "The model")."""

__version__ = "0.1.0"
